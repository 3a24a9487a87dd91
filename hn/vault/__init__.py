"""The vault on disk: layout, atomic writes, identities, artefacts, events, presence."""
