"""Versions in the PostgreSQL store (table `versions`, migration 0002): the queries, as functions
of a pool connection that `PostgresStore` lends them. Written directly, not through the log's
outage buffer: saving a version while the database is away fails (`StoreUnavailable`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import asyncpg

from persistence.base import RoomMissing, VersionRecord

if TYPE_CHECKING:
    from persistence.postgres import Connection

_COLUMNS = "id, room, created_at, label, automatic, authors, length(data) AS size"


def _record(row: asyncpg.Record) -> VersionRecord:
    return VersionRecord(
        row["id"],
        row["room"],
        row["created_at"],
        row["label"],
        row["automatic"],
        tuple(row["authors"]),
        row["size"],
    )


async def save(
    conn: Connection,
    room_id: str,
    state: bytes,
    label: str | None,
    automatic: bool,
    authors: Sequence[str],
    created_at: datetime | None,
) -> VersionRecord:
    try:
        row = await conn.fetchrow(
            "INSERT INTO versions (room, label, automatic, authors, data, created_at)"
            f" VALUES ($1, $2, $3, $4, $5, coalesce($6, now())) RETURNING {_COLUMNS}",
            room_id,
            label,
            automatic,
            list(authors),
            state,
            created_at,
        )
    except asyncpg.ForeignKeyViolationError:
        raise RoomMissing(f"room {room_id!r} does not exist") from None
    assert row is not None
    return _record(row)


async def page(
    conn: Connection, room_id: str, limit: int, before: int | None
) -> list[VersionRecord]:
    rows = await conn.fetch(
        f"SELECT {_COLUMNS} FROM versions WHERE room = $1 AND ($2::bigint IS NULL OR id < $2)"
        " ORDER BY id DESC LIMIT $3",
        room_id,
        before,
        limit,
    )
    return [_record(row) for row in rows]


async def get(conn: Connection, room_id: str, version_id: int) -> VersionRecord | None:
    row = await conn.fetchrow(
        f"SELECT {_COLUMNS} FROM versions WHERE room = $1 AND id = $2", room_id, version_id
    )
    return _record(row) if row is not None else None


async def state(conn: Connection, room_id: str, version_id: int) -> bytes | None:
    data = await conn.fetchval(
        "SELECT data FROM versions WHERE room = $1 AND id = $2", room_id, version_id
    )
    return bytes(data) if data is not None else None


async def delete(conn: Connection, room_id: str, version_id: int) -> bool:
    removed = await conn.fetchval(
        "DELETE FROM versions WHERE room = $1 AND id = $2 RETURNING 1", room_id, version_id
    )
    return removed is not None


async def prune(conn: Connection, room_id: str, keep: int, older_than: datetime | None) -> int:
    removed = await conn.fetchval(
        "WITH gone AS (DELETE FROM versions WHERE room = $1 AND automatic AND (id NOT IN"
        " (SELECT id FROM versions WHERE room = $1 AND automatic ORDER BY id DESC LIMIT $2)"
        " OR created_at < $3) RETURNING 1) SELECT count(*) FROM gone",
        room_id,
        keep,
        older_than,
    )
    return int(removed)
