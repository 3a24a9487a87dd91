"""Presence relays: keep friends' signed presence and index slices reachable while they are offline."""
