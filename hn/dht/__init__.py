"""DHT discovery: dht_hint@1 records on a hardened Kademlia (kademlia 2.2.3 / rpcudp 5.0.1)."""
