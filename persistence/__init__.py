"""Durable storage of rooms as bytes; the backend is picked from a URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from persistence.base import (
    RoomExists,
    RoomMissing,
    RoomRecord,
    Store,
    StoredLog,
    StoreError,
    StoreUnavailable,
)

__all__ = [
    "RoomExists",
    "RoomMissing",
    "RoomRecord",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredLog",
    "open_store",
]


def open_store(url: str) -> Store:
    """Build the store a URL names (not yet opened); backends are imported only when chosen.

    `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, `memory://`.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from persistence.memory import MemoryStore

        return MemoryStore()
    if scheme == "sqlite":
        from persistence.sqlite import SQLiteStore

        # As in SQLAlchemy: three slashes start a relative path, four an absolute one.
        path = url.removeprefix("sqlite://")
        if not path.startswith("/") or len(path) < 2:
            raise StoreError(f"sqlite URL needs a path, as in sqlite:///data/collab.db: {url!r}")
        return SQLiteStore(path[1:])
    raise StoreError(f"unknown store URL scheme {scheme!r} in {url!r}")
