"""Who wrote a room's items, in the SQLite store: the SQL, as functions of a connection, run by
`SQLiteStore` on its writer thread (saves) or a reader thread (loads)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from persistence.base import Author, AuthorRange

# Created with the other tables at every open, so a database made before authorship gains it.
SCHEMA = """
CREATE TABLE IF NOT EXISTS authorship (
    room TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    client INTEGER NOT NULL,
    clock INTEGER NOT NULL,
    length INTEGER NOT NULL,
    name TEXT NOT NULL,
    user_id TEXT,
    self_declared INTEGER NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (room, client, clock)
) WITHOUT ROWID;
"""


def save(conn: sqlite3.Connection, room_id: str, ranges: Sequence[AuthorRange]) -> None:
    # Through a SELECT on rooms: a room deleted meanwhile gains no rows (and raises nothing).
    conn.executemany(
        "INSERT INTO authorship (room, client, clock, length, name, user_id, self_declared, time)"
        " SELECT id, ?, ?, ?, ?, ?, ?, ? FROM rooms WHERE id = ?"
        " ON CONFLICT (room, client, clock) DO UPDATE SET length = excluded.length,"
        " name = excluded.name, user_id = excluded.user_id, self_declared = excluded.self_declared,"
        " time = excluded.time",
        [
            (
                found.client,
                found.clock,
                found.length,
                found.author.name,
                found.author.user,
                int(found.author.self_declared),
                found.time.timestamp(),
                room_id,
            )
            for found in ranges
        ],
    )


def load(conn: sqlite3.Connection, room_id: str) -> list[AuthorRange]:
    rows = conn.execute(
        "SELECT client, clock, length, name, user_id, self_declared, time FROM authorship"
        " WHERE room = ? ORDER BY client, clock",
        (room_id,),
    )
    return [
        AuthorRange(
            client,
            clock,
            length,
            Author(name, user, bool(self_declared)),
            datetime.fromtimestamp(made, UTC),
        )
        for client, clock, length, name, user, self_declared, made in rows
    ]
