"""Who wrote a room's items, in the PostgreSQL store (table `authorship`, migration 0003): the
queries, as functions of a pool connection that `PostgresStore` lends them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from persistence.base import Author, AuthorRange

if TYPE_CHECKING:
    from persistence.postgres import Connection


async def save(conn: Connection, room_id: str, ranges: Sequence[AuthorRange]) -> None:
    # One statement for the lot; through a join on rooms, so a room deleted meanwhile gains
    # no rows (and raises nothing).
    await conn.execute(
        "INSERT INTO authorship (room, client, clock, length, name, user_id, self_declared, time)"
        " SELECT rooms.id, r.client, r.clock, r.length, r.name, r.user_id, r.self_declared, r.time"
        " FROM rooms, unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],"
        "  $7::boolean[], $8::timestamptz[])"
        "  AS r (client, clock, length, name, user_id, self_declared, time)"
        " WHERE rooms.id = $1"
        " ON CONFLICT (room, client, clock) DO UPDATE SET length = excluded.length,"
        " name = excluded.name, user_id = excluded.user_id,"
        " self_declared = excluded.self_declared, time = excluded.time",
        room_id,
        [found.client for found in ranges],
        [found.clock for found in ranges],
        [found.length for found in ranges],
        [found.author.name for found in ranges],
        [found.author.user for found in ranges],
        [found.author.self_declared for found in ranges],
        [found.time for found in ranges],
    )


async def load(conn: Connection, room_id: str) -> list[AuthorRange]:
    rows = await conn.fetch(
        "SELECT client, clock, length, name, user_id, self_declared, time FROM authorship"
        " WHERE room = $1 ORDER BY client, clock",
        room_id,
    )
    return [
        AuthorRange(
            row["client"],
            row["clock"],
            row["length"],
            Author(row["name"], row["user_id"], row["self_declared"]),
            row["time"],
        )
        for row in rows
    ]
