"""The PostgreSQL schema: numbered SQL migrations, each applied once, under an advisory lock.

Migrations are the files `persistence/migrations/NNNN_name.sql`, applied in order, each in its own
transaction together with its row in `schema_migrations`. Any number of processes may migrate at
once (`collab-server migrate`, or several servers starting together): a session-level advisory
lock lets one of them apply what is missing while the others wait, then find nothing left to do.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from persistence.base import StoreError

logger = logging.getLogger(__name__)

# pg_advisory_lock key taken while migrating: b"collabmg" read as a big-endian signed bigint.
MIGRATION_LOCK = int.from_bytes(b"collabmg", "big", signed=True)
_FILE_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with the package, in order; numbering must have no gap."""
    found: list[Migration] = []
    for entry in resources.files("persistence").joinpath("migrations").iterdir():
        match = _FILE_NAME.fullmatch(entry.name)
        if match is None:
            continue
        found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    if [migration.version for migration in found] != list(range(1, len(found) + 1)):
        raise StoreError(f"migrations must be numbered 1..n: {[m.version for m in found]}")
    return found


async def migrate(conn: asyncpg.Connection[asyncpg.Record]) -> list[Migration]:
    """Apply the migrations the database lacks; return those applied by this call."""
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {
            row["version"] for row in await conn.fetch("SELECT version FROM schema_migrations")
        }
        known = migrations()
        newer = applied - {migration.version for migration in known}
        if newer:
            raise StoreError(
                f"the database has migrations this server does not know: {sorted(newer)};"
                " run a newer server"
            )
        for migration in known:
            if migration.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            logger.info("applied migration %04d_%s", migration.version, migration.name)
            applied_now.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    if not applied_now:
        logger.info("database schema is up to date (%d migrations)", len(known))
    return applied_now
