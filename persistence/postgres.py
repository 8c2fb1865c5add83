"""The PostgreSQL store (`postgresql://...`): an asyncpg pool for reads, one writer for the log.

Appends go through `LogWriter` (group commit, outage buffer); everything else runs on a pool
connection. The schema is migrated when the store opens (see `persistence.schema`). Room sizes
and log lengths are counters kept by the transactions that change them, so listing rooms scans
no log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from persistence import postgres_authorship as authorship
from persistence import postgres_versions as versions
from persistence.base import (
    BUFFERED,
    AuthorRange,
    RoomExists,
    RoomMissing,
    RoomRecord,
    StoredLog,
    StoreError,
    StoreUnavailable,
    VersionRecord,
)
from persistence.postgres_writer import TRANSIENT_ERRORS, LogWriter
from persistence.schema import migrate

logger = logging.getLogger(__name__)

DEFAULT_OUTAGE_BUFFER_BYTES = 64 * 1024 * 1024
POOL_SIZE = 8
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 30.0
LOAD_WAIT_SECONDS = 5.0  # how long a load waits for updates buffered in an outage to be written
CLOSE_TIMEOUT = 10.0

Connection: TypeAlias = (
    "asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"
)

_ROOM_COLUMNS = (
    "id, name, language, created_at, updated_at, snapshot_bytes + log_bytes AS size, log_rows"
)


def redacted(dsn: str) -> str:
    """The URL without its password, for log lines and error messages."""
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def migrate_database(dsn: str) -> list[str]:
    """Apply missing migrations to the database at `dsn` (`collab-server migrate`)."""
    try:
        conn = await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT)
    except TRANSIENT_ERRORS as error:
        raise StoreUnavailable(f"cannot reach {redacted(dsn)}: {error}") from error
    try:
        applied = await migrate(conn)
    except asyncpg.PostgresError as error:
        raise StoreError(f"migrating {redacted(dsn)} failed: {error}") from error
    finally:
        await conn.close()
    return [f"{migration.version:04d}_{migration.name}" for migration in applied]


def _record(row: asyncpg.Record) -> RoomRecord:
    return RoomRecord(
        row["id"],
        row["name"],
        row["language"],
        row["created_at"],
        row["updated_at"],
        row["size"],
        row["log_rows"],
    )


class PostgresStore:
    def __init__(self, dsn: str, *, outage_buffer_bytes: int = DEFAULT_OUTAGE_BUFFER_BYTES) -> None:
        self.dsn = dsn
        self._outage_buffer_bytes = outage_buffer_bytes
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._writer: LogWriter | None = None

    async def _connect(self) -> asyncpg.Connection[asyncpg.Record]:
        return await asyncpg.connect(
            self.dsn, timeout=CONNECT_TIMEOUT, command_timeout=COMMAND_TIMEOUT
        )

    async def open(self) -> None:
        """Migrate the schema, open the pool and start the writer; raise if unreachable."""
        try:
            conn = await self._connect()
            try:
                await migrate(conn)
            finally:
                await conn.close()
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=0,  # no floor to restore (and log about) while the database is down
                max_size=POOL_SIZE,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
            )
            self._writer = LogWriter(
                self._connect,
                buffer_bytes=self._outage_buffer_bytes,
                on_reconnect=self._pool.expire_connections,
            )
            await self._writer.start()
        except TRANSIENT_ERRORS as error:
            await self.close()
            raise StoreUnavailable(f"cannot reach {redacted(self.dsn)}: {error}") from error
        except asyncpg.PostgresError as error:
            await self.close()
            raise StoreError(f"cannot open {redacted(self.dsn)}: {error}") from error
        logger.info("PostgreSQL store open at %s", redacted(self.dsn))

    async def close(self) -> None:
        """Write every queued update (reconnecting if need be, within a bound), then disconnect."""
        if self._writer is not None:
            await self._writer.stop(CLOSE_TIMEOUT)
            self._writer = None
        if self._pool is not None:
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await self._pool.close()
            except TimeoutError:
                self._pool.terminate()
            self._pool = None

    def is_ready(self) -> bool:
        """Connected, and nothing accepted during an outage is still waiting to be written."""
        writer = self._writer
        return writer is not None and writer.running and writer.connected and writer.unsynced == 0

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pool connection, with asyncpg's errors turned into `StoreError`s."""
        if self._pool is None:
            raise StoreError("the PostgreSQL store is not open")
        try:
            async with self._pool.acquire(timeout=CONNECT_TIMEOUT) as conn:
                yield conn
        except TRANSIENT_ERRORS as error:
            raise StoreUnavailable(f"PostgreSQL unreachable: {error}") from error
        except asyncpg.PostgresError as error:
            raise StoreError(f"PostgreSQL error: {error}") from error

    def _require_writer(self) -> LogWriter:
        if self._writer is None:
            raise StoreError("the PostgreSQL store is not open")
        return self._writer

    # -- rooms --------------------------------------------------------------------------------

    async def create_room(self, room_id: str, name: str, language: str | None) -> RoomRecord:
        async with self._connection() as conn:
            try:
                row = await conn.fetchrow(
                    f"INSERT INTO rooms (id, name, language) VALUES ($1, $2, $3)"
                    f" RETURNING {_ROOM_COLUMNS}",
                    room_id,
                    name,
                    language,
                )
            except asyncpg.UniqueViolationError:
                raise RoomExists(f"room {room_id!r} already exists") from None
        assert row is not None
        return _record(row)

    async def ensure_room(self, room_id: str) -> RoomRecord:
        async with self._connection() as conn:
            # One statement: the insert's RETURNING if it created the room, else the stored row.
            row = await conn.fetchrow(
                f"WITH created AS (INSERT INTO rooms (id, name) VALUES ($1, $1)"
                f" ON CONFLICT (id) DO NOTHING RETURNING {_ROOM_COLUMNS})"
                f" SELECT * FROM created"
                f" UNION ALL SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = $1",
                room_id,
            )
            if row is None:
                # Created by another process after this statement's snapshot was taken.
                row = await conn.fetchrow(
                    f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = $1", room_id
                )
        if row is None:  # and deleted again since
            raise RoomMissing(f"room {room_id!r} does not exist")
        return _record(row)

    async def get_room(self, room_id: str) -> RoomRecord | None:
        async with self._connection() as conn:
            row = await conn.fetchrow(f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE id = $1", room_id)
        return _record(row) if row is not None else None

    async def list_rooms(self) -> list[RoomRecord]:
        async with self._connection() as conn:
            rows = await conn.fetch(f"SELECT {_ROOM_COLUMNS} FROM rooms ORDER BY id")
        return [_record(row) for row in rows]

    async def page_rooms(self, limit: int, after: str | None = None) -> list[RoomRecord]:
        async with self._connection() as conn:
            if after is None:
                rows = await conn.fetch(
                    f"SELECT {_ROOM_COLUMNS} FROM rooms ORDER BY created_at DESC, id DESC LIMIT $1",
                    limit,
                )
            else:
                rows = await conn.fetch(
                    f"SELECT {_ROOM_COLUMNS} FROM rooms WHERE (created_at, id) <"
                    " (SELECT created_at, id FROM rooms WHERE id = $2)"
                    " ORDER BY created_at DESC, id DESC LIMIT $1",
                    limit,
                    after,
                )
        return [_record(row) for row in rows]

    async def set_language(self, room_id: str, language: str | None) -> None:
        async with self._connection() as conn:
            await conn.execute("UPDATE rooms SET language = $2 WHERE id = $1", room_id, language)

    async def rename_room(self, room_id: str, name: str) -> bool:
        async with self._connection() as conn:
            renamed = await conn.fetchval(
                "UPDATE rooms SET name = $2 WHERE id = $1 RETURNING 1", room_id, name
            )
        return renamed is not None

    async def delete_room(self, room_id: str) -> bool:
        async with self._connection() as conn:
            deleted = await conn.fetchval("DELETE FROM rooms WHERE id = $1 RETURNING 1", room_id)
        return deleted is not None

    # -- the log ------------------------------------------------------------------------------

    async def append(self, room_id: str, update: bytes) -> int:
        (seq,) = await self.append_many(room_id, [update])
        return seq

    async def append_many(self, room_id: str, updates: list[bytes]) -> list[int]:
        writer = self._require_writer()
        if len(updates) == 1:  # one keystroke: no gathering
            waiter = writer.append(room_id, updates[0])
            return [BUFFERED if waiter is None else await waiter]
        # Queued together, so the writer commits them in one batch; None means BUFFERED.
        waiters = [writer.append(room_id, update) for update in updates]
        pending = [waiter for waiter in waiters if waiter is not None]
        seqs = iter(await asyncio.gather(*pending))
        return [BUFFERED if waiter is None else next(seqs) for waiter in waiters]

    async def load(self, room_id: str) -> StoredLog:
        # Updates accepted during an outage must be in the log before anyone reads it.
        await self._require_writer().wait_synced(LOAD_WAIT_SECONDS)
        async with (
            self._connection() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            last_seq = await conn.fetchval("SELECT last_seq FROM rooms WHERE id = $1", room_id)
            if last_seq is None:
                raise RoomMissing(f"room {room_id!r} does not exist")
            snapshot = await conn.fetchval("SELECT data FROM snapshots WHERE room = $1", room_id)
            rows = await conn.fetch(
                "SELECT seq, data FROM updates WHERE room = $1 ORDER BY seq", room_id
            )
        return StoredLog(
            snapshot, [row["data"] for row in rows], last_seq, [row["seq"] for row in rows]
        )

    async def last_seqs(self, room_ids: Sequence[str]) -> dict[str, int]:
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT id, last_seq FROM rooms WHERE id = any($1::text[])", list(room_ids)
            )
        return {row["id"]: row["last_seq"] for row in rows}

    async def discard(self, room_id: str, seqs: list[int]) -> int:
        async with self._connection() as conn, conn.transaction():
            removed: int = await conn.fetchval(
                "WITH gone AS ("
                " DELETE FROM updates WHERE room = $1 AND seq = any($2::bigint[])"
                " RETURNING octet_length(data) AS size),"
                " counted AS ("
                " UPDATE rooms SET"
                " log_rows = log_rows - (SELECT count(*) FROM gone),"
                " log_bytes = log_bytes - (SELECT coalesce(sum(size), 0) FROM gone)"
                " WHERE id = $1)"
                " SELECT count(*) FROM gone",
                room_id,
                seqs,
            )
        return removed

    async def compact(
        self, room_id: str, snapshot: bytes, through_seq: int, keep: Sequence[int] = ()
    ) -> bool:
        async with self._connection() as conn, conn.transaction():
            # The room's row lock orders this against appends and other compactions of the room.
            locked = await conn.fetchval(
                "SELECT 1 FROM rooms WHERE id = $1 FOR NO KEY UPDATE", room_id
            )
            if locked is None:
                raise RoomMissing(f"room {room_id!r} does not exist")
            replaced = await conn.fetchval(
                "INSERT INTO snapshots AS s (room, data, through_seq) VALUES ($1, $2, $3)"
                " ON CONFLICT (room) DO UPDATE"
                " SET data = excluded.data, through_seq = excluded.through_seq,"
                " created_at = now()"
                " WHERE s.through_seq < excluded.through_seq"
                " RETURNING 1",
                room_id,
                snapshot,
                through_seq,
            )
            if replaced is None:
                return False
            await conn.execute(
                "WITH merged AS ("
                " DELETE FROM updates WHERE room = $1 AND seq <= $2 AND seq <> all($4::bigint[])"
                " RETURNING octet_length(data) AS size)"
                " UPDATE rooms SET"
                " log_rows = log_rows - (SELECT count(*) FROM merged),"
                " log_bytes = log_bytes - (SELECT coalesce(sum(size), 0) FROM merged),"
                " snapshot_bytes = $3"
                " WHERE id = $1",
                room_id,
                through_seq,
                len(snapshot),
                list(keep),
            )
        return True

    # -- versions (the SQL is in postgres_versions) ---------------------------------------------

    async def save_version(
        self,
        room_id: str,
        state: bytes,
        *,
        label: str | None,
        automatic: bool,
        authors: Sequence[str],
        created_at: datetime | None = None,
        base: int | None = None,
    ) -> VersionRecord:
        async with self._connection() as conn:
            return await versions.save(
                conn, room_id, state, label, automatic, authors, created_at, base
            )

    async def page_versions(
        self, room_id: str, limit: int, before: int | None = None
    ) -> list[VersionRecord]:
        async with self._connection() as conn:
            return await versions.page(conn, room_id, limit, before)

    async def get_version(self, room_id: str, version_id: int) -> VersionRecord | None:
        async with self._connection() as conn:
            return await versions.get(conn, room_id, version_id)

    async def count_named_versions(self, room_id: str) -> int:
        async with self._connection() as conn:
            return await versions.count_named(conn, room_id)

    async def version_parts(self, room_id: str, version_id: int) -> list[bytes] | None:
        async with self._connection() as conn:
            return await versions.parts(conn, room_id, version_id)

    async def delete_version(self, room_id: str, version_id: int) -> bool:
        async with self._connection() as conn:
            return await versions.delete(conn, room_id, version_id)

    async def prune_versions(self, room_id: str, keep: int, older_than: datetime | None) -> int:
        async with self._connection() as conn:
            return await versions.prune(conn, room_id, keep, older_than)

    # -- authorship (the SQL is in postgres_authorship) -----------------------------------------

    async def save_authorship(self, room_id: str, ranges: Sequence[AuthorRange]) -> None:
        async with self._connection() as conn:
            await authorship.save(conn, room_id, ranges)

    async def load_authorship(self, room_id: str) -> list[AuthorRange]:
        async with self._connection() as conn:
            return await authorship.load(conn, room_id)
