"""Versions in the SQLite store: the SQL, as functions of a connection, run by `SQLiteStore` on
its writer thread (saves, deletions) or a reader thread (reads)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from persistence.base import BaseVersionGone, RoomMissing, VersionRecord

# Created with the other tables at every open, so a database made before versions gains it.
# AUTOINCREMENT: a deleted version's id is never given again (it is in URLs). `base_id`: the
# version this one is a change to; `hidden`: deleted, kept while versions are built on it.
SCHEMA = """
CREATE TABLE IF NOT EXISTS versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    label TEXT,
    automatic INTEGER NOT NULL,
    authors TEXT NOT NULL,
    data BLOB NOT NULL,
    base_id INTEGER REFERENCES versions (id),
    hidden INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS versions_of_room ON versions (room, id);
"""
# What a database made before incremental versions lacks (added at open).
ADDED_COLUMNS = {
    "base_id": "ALTER TABLE versions ADD COLUMN base_id INTEGER REFERENCES versions (id)",
    "hidden": "ALTER TABLE versions ADD COLUMN hidden INTEGER NOT NULL DEFAULT 0",
}
INDEXES = "CREATE INDEX IF NOT EXISTS versions_on_base ON versions (base_id);"

_COLUMNS = "id, room, created_at, label, automatic, authors, length(data), base_id"


def upgrade(conn: sqlite3.Connection) -> None:
    """Bring a database made by an older server up to this schema."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(versions)")}
    for column, statement in ADDED_COLUMNS.items():
        if column not in have:
            conn.execute(statement)
    conn.executescript(INDEXES)


def _record(row: tuple[int, str, float, str | None, int, str, int, int | None]) -> VersionRecord:
    version_id, room_id, created_at, label, automatic, authors, size, base = row
    return VersionRecord(
        version_id,
        room_id,
        datetime.fromtimestamp(created_at, UTC),
        label,
        bool(automatic),
        tuple(json.loads(authors)),
        size,
        base,
    )


def save(
    conn: sqlite3.Connection,
    room_id: str,
    state: bytes,
    label: str | None,
    automatic: bool,
    authors: Sequence[str],
    created_at: float,
    base: int | None,
) -> VersionRecord:
    if conn.execute("SELECT 1 FROM rooms WHERE id = ?", (room_id,)).fetchone() is None:
        raise RoomMissing(f"room {room_id!r} does not exist")
    if base is not None and not _exists(conn, room_id, base):
        raise BaseVersionGone(f"version {base} of room {room_id!r} is gone")
    cursor = conn.execute(
        "INSERT INTO versions (room, created_at, label, automatic, authors, data, base_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (room_id, created_at, label, int(automatic), json.dumps(list(authors)), state, base),
    )
    found = get(conn, room_id, int(cursor.lastrowid or 0))
    assert found is not None  # inserted by this transaction
    return found


def page(
    conn: sqlite3.Connection, room_id: str, limit: int, before: int | None
) -> list[VersionRecord]:
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM versions WHERE room = ? AND id < ? AND NOT hidden"
        " ORDER BY id DESC LIMIT ?",
        (room_id, before if before is not None else 2**63 - 1, limit),
    )
    return [_record(row) for row in rows]


def get(conn: sqlite3.Connection, room_id: str, version_id: int) -> VersionRecord | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM versions WHERE room = ? AND id = ? AND NOT hidden",
        (room_id, version_id),
    ).fetchone()
    return _record(row) if row else None


def count_named(conn: sqlite3.Connection, room_id: str) -> int:
    (count,) = conn.execute(
        "SELECT count(*) FROM versions WHERE room = ? AND NOT automatic AND NOT hidden",
        (room_id,),
    ).fetchone()
    return int(count)


def parts(conn: sqlite3.Connection, room_id: str, version_id: int) -> list[bytes] | None:
    if get(conn, room_id, version_id) is None:
        return None
    found: list[bytes] = []
    at: int | None = version_id
    while at is not None:
        data, at = conn.execute(
            "SELECT data, base_id FROM versions WHERE room = ? AND id = ?", (room_id, at)
        ).fetchone()
        found.append(bytes(data))
    return found[::-1]


def delete(conn: sqlite3.Connection, room_id: str, version_id: int) -> bool:
    if get(conn, room_id, version_id) is None:
        return False
    _remove(conn, room_id, version_id)
    return True


def prune(conn: sqlite3.Connection, room_id: str, keep: int, older_than: float | None) -> int:
    doomed = [
        version_id
        for (version_id,) in conn.execute(
            "SELECT id FROM versions WHERE room = ? AND automatic AND NOT hidden AND (id NOT IN"
            " (SELECT id FROM versions WHERE room = ? AND automatic AND NOT hidden"
            "  ORDER BY id DESC LIMIT ?) OR created_at < ?) ORDER BY id DESC",
            (room_id, room_id, keep, older_than if older_than is not None else float("-inf")),
        ).fetchall()
    ]
    for version_id in doomed:
        _remove(conn, room_id, version_id)
    return len(doomed)


def _exists(conn: sqlite3.Connection, room_id: str, version_id: int) -> bool:
    found = conn.execute(
        "SELECT 1 FROM versions WHERE room = ? AND id = ?", (room_id, version_id)
    ).fetchone()
    return found is not None


def _remove(conn: sqlite3.Connection, room_id: str, version_id: int) -> None:
    """Delete the version, or hide it while others are built on it; then the hidden versions
    it was built on that nothing needs any more."""
    at: int | None = version_id
    while at is not None:
        if conn.execute("SELECT 1 FROM versions WHERE base_id = ?", (at,)).fetchone():
            conn.execute("UPDATE versions SET hidden = 1 WHERE id = ?", (at,))
            return
        (base,) = conn.execute("SELECT base_id FROM versions WHERE id = ?", (at,)).fetchone()
        conn.execute("DELETE FROM versions WHERE id = ?", (at,))
        hidden = base is not None and conn.execute(
            "SELECT hidden FROM versions WHERE id = ?", (base,)
        ).fetchone() == (1,)
        at = base if hidden else None
