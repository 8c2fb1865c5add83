"""Versions in the PostgreSQL store (table `versions`, migration 0002): the queries, as functions
of a pool connection that `PostgresStore` lends them. Written directly, not through the log's
outage buffer: saving a version while the database is away fails (`StoreUnavailable`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from persistence.base import BaseVersionGone, RoomMissing, VersionRecord

if TYPE_CHECKING:
    from persistence.postgres import Connection

_COLUMNS = "id, room, created_at, label, automatic, authors, length(data) AS size, base_id"


def _record(row: asyncpg.Record) -> VersionRecord:
    return VersionRecord(
        row["id"],
        row["room"],
        row["created_at"],
        row["label"],
        row["automatic"],
        tuple(row["authors"]),
        row["size"],
        row["base_id"],
    )


async def save(
    conn: Connection,
    room_id: str,
    state: bytes,
    label: str | None,
    automatic: bool,
    authors: Sequence[str],
    created_at: datetime | None,
    base: int | None,
) -> VersionRecord:
    # The foreign keys lock the room and the base against a concurrent delete.
    try:
        row = await conn.fetchrow(
            "INSERT INTO versions (room, label, automatic, authors, data, created_at, base_id)"
            f" VALUES ($1, $2, $3, $4, $5, coalesce($6, now()), $7) RETURNING {_COLUMNS}",
            room_id,
            label,
            automatic,
            list(authors),
            state,
            created_at,
            base,
        )
    except asyncpg.ForeignKeyViolationError as error:
        if error.constraint_name == "versions_base_id_fkey":
            raise BaseVersionGone(f"version {base} of room {room_id!r} is gone") from None
        raise RoomMissing(f"room {room_id!r} does not exist") from None
    assert row is not None
    return _record(row)


async def page(
    conn: Connection, room_id: str, limit: int, before: int | None
) -> list[VersionRecord]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM versions WHERE room = $1 AND ($2::bigint IS NULL OR id < $2)"
        " AND NOT hidden ORDER BY id DESC LIMIT $3",
        room_id,
        before,
        limit,
    )
    return [_record(row) for row in rows]


async def get(conn: Connection, room_id: str, version_id: int) -> VersionRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM versions WHERE room = $1 AND id = $2 AND NOT hidden",
        room_id,
        version_id,
    )
    return _record(row) if row is not None else None


async def count_named(conn: Connection, room_id: str) -> int:
    count = await conn.fetchval(
        "SELECT count(*) FROM versions WHERE room = $1 AND NOT automatic AND NOT hidden", room_id
    )
    return int(count)


async def parts(conn: Connection, room_id: str, version_id: int) -> list[bytes] | None:
    """The version's bytes and its bases', whole document first, in one recursive query."""
    rows = await conn.fetch(
        "WITH RECURSIVE chain AS ("
        " SELECT id, base_id, data, 0 AS depth FROM versions"
        "  WHERE room = $1 AND id = $2 AND NOT hidden"
        " UNION ALL SELECT v.id, v.base_id, v.data, chain.depth + 1"
        "  FROM versions v JOIN chain ON v.id = chain.base_id)"
        " SELECT data FROM chain ORDER BY depth DESC",
        room_id,
        version_id,
    )
    return [bytes(row["data"]) for row in rows] or None


async def delete(conn: Connection, room_id: str, version_id: int) -> bool:
    async with conn.transaction():
        found = await conn.fetchval(
            "SELECT 1 FROM versions WHERE room = $1 AND id = $2 AND NOT hidden FOR UPDATE",
            room_id,
            version_id,
        )
        if found is None:
            return False
        await _remove(conn, version_id)
    return True


async def prune(conn: Connection, room_id: str, keep: int, older_than: datetime | None) -> int:
    async with conn.transaction():
        doomed = await conn.fetch(
            "SELECT id FROM versions WHERE room = $1 AND automatic AND NOT hidden AND (id NOT IN"
            " (SELECT id FROM versions WHERE room = $1 AND automatic AND NOT hidden"
            "  ORDER BY id DESC LIMIT $2) OR created_at < $3) ORDER BY id DESC FOR UPDATE",
            room_id,
            keep,
            older_than,
        )
        for row in doomed:
            await _remove(conn, row["id"])
    return len(doomed)


async def _remove(conn: Connection, version_id: int) -> None:
    """Delete the version, or hide it while others are built on it; then the hidden versions
    it was built on that nothing needs any more."""
    at: int | None = version_id
    while at is not None:
        if await conn.fetchval("SELECT 1 FROM versions WHERE base_id = $1", at):
            await conn.execute("UPDATE versions SET hidden = true WHERE id = $1", at)
            return
        base = await conn.fetchval("DELETE FROM versions WHERE id = $1 RETURNING base_id", at)
        hidden = base is not None and await conn.fetchval(
            "SELECT hidden FROM versions WHERE id = $1 FOR UPDATE", base
        )
        at = base if hidden else None
