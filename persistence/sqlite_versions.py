"""Versions in the SQLite store: the SQL, as functions of a connection, run by `SQLiteStore` on
its writer thread (saves, deletions) or a reader thread (reads)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from persistence.base import RoomMissing, VersionRecord

# Created with the other tables at every open, so a database made before versions gains it.
# AUTOINCREMENT: a deleted version's id is never given again (it is in URLs).
SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    label TEXT,
    automatic INTEGER NOT NULL,
    authors TEXT NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS versions_of_room ON versions (room, id);
"""

_COLUMNS = "id, room, created_at, label, automatic, authors, length(data)"


def _record(row: tuple[int, str, float, str | None, int, str, int]) -> VersionRecord:
    version_id, room_id, created_at, label, automatic, authors, size = row
    return VersionRecord(
        version_id,
        room_id,
        datetime.fromtimestamp(created_at, UTC),
        label,
        bool(automatic),
        tuple(json.loads(authors)),
        size,
    )


def save(
    conn: sqlite3.Connection,
    room_id: str,
    state: bytes,
    label: str | None,
    automatic: bool,
    authors: Sequence[str],
    created_at: float,
) -> VersionRecord:
    if conn.execute("SELECT 1 FROM rooms WHERE id = ?", (room_id,)).fetchone() is None:
        raise RoomMissing(f"room {room_id!r} does not exist")
    cursor = conn.execute(
        "INSERT INTO versions (room, created_at, label, automatic, authors, data)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (room_id, created_at, label, int(automatic), json.dumps(list(authors)), state),
    )
    found = get(conn, room_id, int(cursor.lastrowid or 0))
    assert found is not None  # inserted by this transaction
    return found


def page(
    conn: sqlite3.Connection, room_id: str, limit: int, before: int | None
) -> list[VersionRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM versions WHERE room = ? AND id < ? ORDER BY id DESC LIMIT ?",
        (room_id, before if before is not None else 2**63 - 1, limit),
    )
    return [_record(row) for row in rows]


def get(conn: sqlite3.Connection, room_id: str, version_id: int) -> VersionRecord | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM versions WHERE room = ? AND id = ?", (room_id, version_id)
    ).fetchone()
    return _record(row) if row else None


def state(conn: sqlite3.Connection, room_id: str, version_id: int) -> bytes | None:
    row = conn.execute(
        "SELECT data FROM versions WHERE room = ? AND id = ?", (room_id, version_id)
    ).fetchone()
    return bytes(row[0]) if row else None


def delete(conn: sqlite3.Connection, room_id: str, version_id: int) -> bool:
    removed = conn.execute(
        "DELETE FROM versions WHERE room = ? AND id = ?", (room_id, version_id)
    ).rowcount
    return removed > 0


def prune(conn: sqlite3.Connection, room_id: str, keep: int, older_than: float | None) -> int:
    removed = conn.execute(
        "DELETE FROM versions WHERE room = ? AND automatic AND (id NOT IN"
        " (SELECT id FROM versions WHERE room = ? AND automatic ORDER BY id DESC LIMIT ?)"
        " OR created_at < ?)",
        (room_id, room_id, keep, older_than if older_than is not None else float("-inf")),
    ).rowcount
    return removed
