"""The PostgreSQL update-log writer: group commit on one connection, and a buffer for outages.

Appends from every room go into one FIFO. One task takes whatever has queued up, writes it in one
transaction on its own connection, and only then releases the callers waiting for their sequence
numbers: a burst of keystrokes from many rooms costs one commit, not one per update.

When the database cannot be reached, the appends in the FIFO stay there and their callers are
released with `BUFFERED`, so loaded rooms keep relaying; later appends are accepted the same way
while the FIFO holds less than `buffer_bytes`, and refused with `StoreUnavailable` beyond that.
The task reconnects with backoff and writes the FIFO in order. A batch whose commit was cut off
may have been committed after all and is written again: Yjs updates are idempotent, so a
duplicate row costs bytes, never content.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice

import asyncpg

from persistence.base import BUFFERED, RoomMissing, StoreError, StoreUnavailable

logger = logging.getLogger(__name__)

Connect = Callable[[], Awaitable["asyncpg.Connection[asyncpg.Record]"]]

# Errors after which the database may well work again later: connection loss, server shutdown or
# start-up, resource exhaustion, timeouts, deadlocks and serialization failures. asyncpg raises
# InternalClientError on a connection left mid-protocol by a server that shut down under it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
)

# What the reconnect loop keeps trying through (authentication errors included: they may be fixed).
RECONNECT_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, asyncpg.PostgresError)

MAX_BATCH_ROWS = 2000
MAX_BATCH_BYTES = 8 * 1024 * 1024
IDLE_PING_SECONDS = 5.0  # an idle writer checks its connection this often
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0

# One statement, so one round trip and one (implicit) transaction per batch. Each room's row is
# locked in id order (two writers cannot deadlock) and its last_seq raised in the same statement,
# so sequence numbers stay unique with any number of writers; under READ COMMITTED the locking
# read sees the latest committed last_seq. Rows whose room does not exist get no number.
_APPEND = """
WITH batch AS (
    {batch}
), locked AS (
    SELECT r.id, r.last_seq FROM rooms r
    WHERE r.id IN (SELECT room FROM batch)
    ORDER BY r.id
    FOR NO KEY UPDATE
), numbered AS (
    SELECT b.room, b.data, b.accepted_at, b.ord,
        l.last_seq + row_number() OVER (PARTITION BY b.room ORDER BY b.ord) AS seq
    FROM batch b JOIN locked l ON l.id = b.room
), appended AS (
    INSERT INTO updates (room, seq, data, created_at)
    SELECT room, seq, data, accepted_at FROM numbered
), touched AS (
    UPDATE rooms r
    SET last_seq = n.last_seq,
        log_rows = r.log_rows + n.rows,
        log_bytes = r.log_bytes + n.size,
        updated_at = greatest(r.updated_at, n.latest)
    FROM (
        SELECT room, max(seq) AS last_seq, count(*) AS rows,
            sum(octet_length(data)) AS size, max(accepted_at) AS latest
        FROM numbered GROUP BY room
    ) n
    WHERE r.id = n.room
)
SELECT ord, seq FROM numbered
"""
_APPEND_MANY = _APPEND.format(
    batch="SELECT * FROM unnest($1::text[], $2::bytea[], $3::timestamptz[])"
    " WITH ORDINALITY AS b (room, data, accepted_at, ord)"
)
# A batch of one (most of them, at the rates people type): no arrays for asyncpg to encode.
_APPEND_ONE = _APPEND.format(
    batch="SELECT $1::text AS room, $2::bytea AS data, $3::timestamptz AS accepted_at,"
    " 1::bigint AS ord"
)


async def write_batch(
    conn: asyncpg.Connection[asyncpg.Record] | asyncpg.pool.PoolConnectionProxy[asyncpg.Record],
    batch: Sequence[tuple[str, bytes, datetime]],
) -> list[int | RoomMissing]:
    """Append `(room, update, accepted_at)` rows in one transaction; return each one's sequence
    number, or `RoomMissing` for those whose room does not exist (the others are written)."""
    if len(batch) == 1:
        rows = await conn.fetch(_APPEND_ONE, *batch[0])
    else:
        rows = await conn.fetch(
            _APPEND_MANY,
            [room for room, _, _ in batch],
            [update for _, update, _ in batch],
            [accepted_at for _, _, accepted_at in batch],
        )
    seqs: dict[int, int] = {row["ord"]: row["seq"] for row in rows}
    return [
        seqs[ord_] if ord_ in seqs else RoomMissing(f"room {room!r} does not exist")
        for ord_, (room, _, _) in enumerate(batch, start=1)
    ]


@dataclass(slots=True)
class _Append:
    room_id: str
    update: bytes
    accepted_at: datetime
    waiter: asyncio.Future[int] | None  # None once acknowledged as BUFFERED


class LogWriter:
    def __init__(
        self,
        connect: Connect,
        *,
        buffer_bytes: int,
        on_reconnect: Callable[[], Awaitable[None]],
    ) -> None:
        self._connect = connect
        self._buffer_bytes = buffer_bytes
        self._on_reconnect = on_reconnect
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._queue: deque[_Append] = deque()
        self._queued_bytes = 0
        self._unsynced = 0  # appends acknowledged as BUFFERED and not yet written
        self._synced = asyncio.Event()
        self._synced.set()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._losses = 0  # connections lost since the last batch written
        # One timer per IDLE_PING_SECONDS, not one per wait: at typing rates the writer waits
        # after nearly every batch, and a timeout made and cancelled each time was about a
        # fifth of an append's Python in a profile (bench/store_appends.py).
        self._ping_timer: asyncio.TimerHandle | None = None
        self._ping_wanted = False

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    @property
    def running(self) -> bool:
        """False once stopped, or if the writer task died of a bug (the process needs a restart)."""
        return self._task is not None and not self._task.done()

    @property
    def unsynced(self) -> int:
        return self._unsynced

    async def start(self) -> None:
        self._conn = await self._connect()
        self._conn.add_termination_listener(self._on_terminated)
        self._task = asyncio.create_task(self._run(), name="postgres-writer")
        self._task.add_done_callback(self._on_writer_done)

    async def stop(self, seconds: float) -> None:
        """Write what is queued (reconnecting if need be) within `seconds`, then disconnect."""
        if self._task is None:
            return
        self._closing = True
        self._wakeup.set()
        try:
            async with asyncio.timeout(seconds):
                await asyncio.shield(self._task)
        except TimeoutError:
            self._task.cancel()
            await asyncio.wait([self._task])
            if self._conn is not None:
                self._conn.terminate()  # it may be in the middle of a cancelled write
                self._conn = None
            logger.error(
                "PostgreSQL writer stopped with %d updates unwritten (%d acknowledged during an"
                " outage): they are lost",
                len(self._queue),
                self._unsynced,
            )
            for item in self._queue:
                if item.waiter is not None and not item.waiter.done():
                    item.waiter.set_exception(StoreUnavailable("the store closed before writing"))
        self._task = None
        if self._conn is not None:
            await self._conn.close(timeout=seconds)
            self._conn = None

    def append(self, room_id: str, update: bytes) -> asyncio.Future[int] | None:
        """Queue an update: a future for its sequence number, or None if buffered in an outage."""
        if self._closing or self._task is None:
            raise StoreError("the PostgreSQL store is closed")
        now = datetime.now(UTC)
        if not self.connected:
            if self._queued_bytes + len(update) > self._buffer_bytes:
                raise StoreUnavailable(
                    f"PostgreSQL unreachable and {self._queued_bytes} bytes of updates buffered"
                    f" (limit {self._buffer_bytes}); refusing more"
                )
            self._push(_Append(room_id, update, now, None))
            self._unsynced += 1
            self._synced.clear()
            return None
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._push(_Append(room_id, update, now, waiter))
        return waiter

    def _push(self, item: _Append) -> None:
        self._queue.append(item)
        self._queued_bytes += len(item.update)
        self._wakeup.set()

    async def wait_synced(self, seconds: float) -> None:
        """Return once every buffered update is written; `StoreUnavailable` if not in time."""
        if not self.connected:
            raise StoreUnavailable("PostgreSQL is unreachable")
        try:
            async with asyncio.timeout(seconds):
                await self._synced.wait()
        except TimeoutError:
            raise StoreUnavailable(
                f"still writing {self._unsynced} updates buffered during an outage"
            ) from None

    # -- the writer task ----------------------------------------------------------------------

    def _on_writer_done(self, task: asyncio.Task[None]) -> None:
        """A writer that died of a bug must not leave callers waiting forever."""
        if task.cancelled() or task.exception() is None:
            return
        logger.error("the PostgreSQL writer failed", exc_info=task.exception())
        self._closing = True
        for item in self._queue:
            if item.waiter is not None and not item.waiter.done():
                item.waiter.set_exception(StoreError("the PostgreSQL writer failed"))

    def _on_terminated(self, connection: object) -> None:
        self._wakeup.set()  # the loop notices the closed connection at once, even when idle

    async def _run(self) -> None:
        try:
            while True:
                if self._conn is not None and self._conn.is_closed():
                    self._lose_connection("closed by the server")
                if self._conn is None:
                    if self._closing and not self._queue:
                        return
                    await self._reconnect()
                elif self._queue:
                    await self._write_next_batch(self._conn)
                elif self._closing:
                    return
                else:
                    await self._idle(self._conn)
        finally:
            if self._ping_timer is not None:
                self._ping_timer.cancel()
                self._ping_timer = None

    async def _idle(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        """Wait for appends; a writer found waiting when its ping timer fires checks its
        connection."""
        if self._ping_timer is None:
            loop = asyncio.get_running_loop()
            self._ping_timer = loop.call_later(IDLE_PING_SECONDS, self._ping_due)
        await self._wakeup.wait()
        self._wakeup.clear()
        if self._ping_wanted:
            self._ping_wanted = False
            self._ping_timer = None
            if not self._queue and not self._closing:
                try:
                    await conn.execute("SELECT 1", timeout=IDLE_PING_SECONDS)
                except TRANSIENT_ERRORS as error:
                    self._lose_connection(error)

    def _ping_due(self) -> None:
        self._ping_wanted = True
        self._wakeup.set()

    async def _write_next_batch(self, conn: asyncpg.Connection[asyncpg.Record]) -> None:
        batch: list[_Append] = []
        size = 0
        for item in islice(self._queue, MAX_BATCH_ROWS):
            if batch and size + len(item.update) > MAX_BATCH_BYTES:
                break
            batch.append(item)
            size += len(item.update)
        try:
            results: Sequence[int | StoreError] = await write_batch(
                conn, [(item.room_id, item.update, item.accepted_at) for item in batch]
            )
        except TRANSIENT_ERRORS as error:
            self._lose_connection(error)  # the batch stays at the head of the queue
            return
        except asyncpg.PostgresError as error:
            # Not a passing failure: retrying would block every room behind this batch forever.
            logger.exception("PostgreSQL refused a batch of %d updates; dropped", len(batch))
            results = [StoreError(f"PostgreSQL refused the update: {error}")] * len(batch)
        except Exception as error:
            # Whatever else broke, it broke on this connection: a fresh one gets the batch again,
            # rather than the writer dying and every room after it with it.
            logger.exception("writing a batch of %d updates failed; reconnecting", len(batch))
            self._lose_connection(error)
            return
        self._losses = 0
        for _ in batch:
            self._queue.popleft()
        self._queued_bytes -= size
        for item, result in zip(batch, results, strict=True):
            if item.waiter is None:
                self._unsynced -= 1
                if isinstance(result, RoomMissing):
                    logger.warning("room %s: buffered update not written: %s", item.room_id, result)
            elif item.waiter.done():
                continue  # the caller stopped waiting; the update is stored all the same
            elif isinstance(result, StoreError):
                item.waiter.set_exception(result)
            else:
                item.waiter.set_result(result)
        if self._unsynced == 0 and not self._synced.is_set():
            self._synced.set()
            logger.info("PostgreSQL writer: every update buffered during the outage is written")

    def _lose_connection(self, error: BaseException | str) -> None:
        self._losses += 1
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None
        for item in self._queue:
            if item.waiter is not None:
                if not item.waiter.done():
                    item.waiter.set_result(BUFFERED)
                item.waiter = None
                self._unsynced += 1
        if self._unsynced:
            self._synced.clear()
        logger.warning(
            "PostgreSQL connection lost (%s); buffering updates in memory (up to %d bytes),"
            " %d queued",
            error,
            self._buffer_bytes,
            len(self._queue),
        )

    async def _reconnect(self) -> None:
        delay = BACKOFF_FIRST
        if self._losses > 1:
            # Connections that come up but fail again: back off as if they had not come up.
            await asyncio.sleep(min(BACKOFF_FIRST * 2 ** min(self._losses, 10), BACKOFF_MAX))
        while True:
            try:
                conn = await self._connect()
            except RECONNECT_ERRORS as error:
                logger.info("PostgreSQL still unreachable (%s); retrying in %.2f s", error, delay)
            else:
                conn.add_termination_listener(self._on_terminated)
                self._conn = conn
                await self._on_reconnect()
                logger.warning(
                    "PostgreSQL reachable again; writing %d queued updates in order",
                    len(self._queue),
                )
                return
            await asyncio.sleep(delay)  # the backoff itself, not a wait for some state
            delay = min(delay * 2, BACKOFF_MAX) * random.uniform(0.8, 1.2)
