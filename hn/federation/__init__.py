"""Federated indices: the roster of friends, publishing index@2 slices, syncing and mirroring."""
