"""`hn smoke`: whole scenarios run against real nodes on this machine."""
