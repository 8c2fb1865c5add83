"""Rooms: a CRDT document, its peers and their presence; the registry that holds them."""
