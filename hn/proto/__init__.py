"""Pure protocol code: canonical JSON, signatures, Merkle trees, document types.

Nothing in this package touches the disk or the network.
"""
