"""Durable storage of rooms as bytes; the backend is picked from a URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from persistence.base import (
    BUFFERED,
    Author,
    AuthorRange,
    BaseVersionGone,
    RoomExists,
    RoomMissing,
    RoomRecord,
    Store,
    StoredLog,
    StoreError,
    StoreUnavailable,
    VersionRecord,
)

__all__ = [
    "BUFFERED",
    "Author",
    "AuthorRange",
    "BaseVersionGone",
    "RoomExists",
    "RoomMissing",
    "RoomRecord",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StoredLog",
    "VersionRecord",
    "is_postgres_url",
    "migrate",
    "open_store",
]

POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres_url(url: str) -> bool:
    """Whether the URL names a PostgreSQL store: the one several server processes can share."""
    return urlsplit(url).scheme in POSTGRES_SCHEMES


def open_store(url: str, *, outage_buffer_bytes: int | None = None) -> Store:
    """Build the store a URL names (not yet opened); backends are imported only when chosen.

    `sqlite:///relative/path.db`, `sqlite:////absolute/path.db`, `memory://`,
    `postgresql://user@host:port/database` (any asyncpg DSN). `outage_buffer_bytes` bounds what
    a PostgreSQL store accepts in memory while the database is unreachable.
    """
    if is_postgres_url(url):
        from persistence.postgres import DEFAULT_OUTAGE_BUFFER_BYTES, PostgresStore

        return PostgresStore(
            url,
            outage_buffer_bytes=DEFAULT_OUTAGE_BUFFER_BYTES
            if outage_buffer_bytes is None
            else outage_buffer_bytes,
        )
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


async def migrate(url: str) -> list[str]:
    """Bring the database a URL names to the current schema; the names of migrations applied.

    Only PostgreSQL has numbered migrations; the other stores create their schema when opened.
    """
    if not is_postgres_url(url):
        return []
    from persistence.postgres import migrate_database

    return await migrate_database(url)
