"""The embedded default store: one SQLite file in WAL mode, one writer thread, group commit,
and reader threads beside it.

Every write runs on one dedicated thread with one connection, in the order it was asked for.
Appends from every room that queue up while a commit is under way are written together in the
next one, so a burst of keystrokes pays for one commit rather than one per update. The thread
takes its work from a plain queue and hands results back with one call per commit, and an append
is one statement: an executor's futures and wake-ups, and a transaction of four statements, cost
more than the commit's own writes (`bench/store_appends.py`).

Reads run on other threads, each with a read-only connection of its own: WAL lets them read
beside the writer, so a keystroke's commit does not wait behind another room's load, and a load
does not wait for the write lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import repeat
from pathlib import Path
from typing import Any, Generic, TypeVar

from persistence import sqlite_authorship as authorship
from persistence import sqlite_versions as versions
from persistence.base import (
    AuthorRange,
    RoomExists,
    RoomMissing,
    RoomRecord,
    StoredLog,
    StoreError,
    VersionRecord,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Loads of big rooms take long: two of them leave the other reads a thread.
READER_THREADS = 3

SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    language TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS updates (
    room TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
-- Kept by the insert itself, so that an append is one statement (one commit) on its own.
CREATE TRIGGER IF NOT EXISTS updates_touch_room AFTER INSERT ON updates BEGIN
    UPDATE rooms SET updated_at = max(updated_at, NEW.created_at) WHERE id = NEW.room;
END;
CREATE TABLE IF NOT EXISTS snapshots (
    room TEXT PRIMARY KEY REFERENCES rooms (id) ON DELETE CASCADE,
    data BLOB NOT NULL,
    through_seq INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""

INSERT_UPDATE = "INSERT INTO updates (room, seq, data, created_at) VALUES (?, ?, ?, ?)"

ROOM_COLUMNS = """
    r.id, r.name, r.language, r.created_at, r.updated_at,
    coalesce((SELECT length(s.data) FROM snapshots s WHERE s.room = r.id), 0)
        + coalesce((SELECT sum(length(u.data)) FROM updates u WHERE u.room = r.id), 0),
    (SELECT count(*) FROM updates u WHERE u.room = r.id)
"""


@dataclass(slots=True)
class _PendingAppend:
    """One `append_many` call: its updates, in order, and one future for their numbers."""

    room_id: str
    updates: list[bytes]
    done: asyncio.Future[list[int]]


@dataclass(slots=True)
class _Job(Generic[T]):
    """Any other write (or a read of `:memory:`), run alone on the writer's thread."""

    work: Callable[[], T]
    done: asyncio.Future[T]


class _Stop:
    """Queued last by `stop`: the thread ends once everything before it is done."""


AppendResults = list[list[int] | StoreError]


class _WriterThread:
    """The one thread that writes, and its queue. Appends queued next to each other are written
    in one commit; a job runs alone, in its place in the queue."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        write_appends: Callable[[list[tuple[str, list[bytes]]]], AppendResults],
    ) -> None:
        self._loop = loop
        self._write_appends = write_appends
        self._queue: queue.SimpleQueue[_PendingAppend | _Job[Any] | _Stop] = queue.SimpleQueue()
        self._stopped: asyncio.Future[None] = loop.create_future()
        self._thread = threading.Thread(target=self._serve, name="sqlite-writer", daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        """Appends and jobs the thread has not taken yet."""
        return self._queue.qsize()

    def put(self, item: _PendingAppend | _Job[Any]) -> None:
        self._queue.put(item)

    async def stop(self) -> None:
        """Do everything queued so far, then end the thread."""
        self._queue.put(_Stop())
        await asyncio.shield(self._stopped)

    def _serve(self) -> None:
        try:
            item = self._queue.get()
            while not isinstance(item, _Stop):
                if isinstance(item, _Job):
                    self._run_job(item)
                    item = self._queue.get()
                else:
                    batch, following = self._appends_from(item)
                    self._append(batch)
                    item = self._queue.get() if following is None else following
        finally:
            self._deliver(_settle, self._stopped, None)

    def _appends_from(
        self, first: _PendingAppend
    ) -> tuple[list[_PendingAppend], _Job[Any] | _Stop | None]:
        """`first` and the appends queued right behind it; and the item after them, if the
        queue held one."""
        batch = [first]
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch, None
            if not isinstance(item, _PendingAppend):
                return batch, item
            batch.append(item)

    def _run_job(self, job: _Job[Any]) -> None:
        try:
            result = job.work()
        except Exception as error:
            self._deliver(_fail, job.done, error)
        else:
            self._deliver(_settle, job.done, result)

    def _append(self, batch: list[_PendingAppend]) -> None:
        try:
            results = self._write_appends([(item.room_id, item.updates) for item in batch])
        except Exception as error:
            # Whatever went wrong, the waiting writers hear of it; the thread lives on.
            logger.exception("writing %d appends failed", len(batch))
            failure = error if isinstance(error, StoreError) else StoreError(str(error))
            results = [failure] * len(batch)
        self._deliver(_settle_appends, batch, results)

    def _deliver(self, callback: Callable[..., None], *args: object) -> None:
        # A loop closed under a store nobody closed has nobody left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)


def _settle(done: asyncio.Future[T], result: T) -> None:
    if not done.done():  # its caller may have given up waiting; the write stands all the same
        done.set_result(result)


def _fail(done: asyncio.Future[Any], error: Exception) -> None:
    if not done.done():
        done.set_exception(error)


def _settle_appends(batch: list[_PendingAppend], results: AppendResults) -> None:
    for item, result in zip(batch, results, strict=True):
        if isinstance(result, StoreError):
            _fail(item.done, result)
        else:
            _settle(item.done, result)


async def _as_store_errors(answer: Awaitable[T]) -> T:
    try:
        return await answer
    except sqlite3.Error as error:
        raise StoreError(f"SQLite error: {error}") from error


def _record(row: tuple[str, str, str | None, float, float, int, int]) -> RoomRecord:
    room_id, name, language, created, updated, size, rows = row
    return RoomRecord(
        room_id,
        name,
        language,
        datetime.fromtimestamp(created, UTC),
        datetime.fromtimestamp(updated, UTC),
        size,
        rows,
    )


class SQLiteStore:
    def __init__(self, path: str, reader_threads: int = READER_THREADS) -> None:
        self.path = path
        self._reader_threads = reader_threads
        self._writer: _WriterThread | None = None
        self._conn: sqlite3.Connection | None = None  # the writer's connection
        self._reads: ThreadPoolExecutor | None = None
        self._readers: list[sqlite3.Connection] = []  # one per reader thread, made on first use
        self._reader_of_thread = threading.local()
        self._closing = False
        self._next_seq: dict[str, int] = {}  # touched only on the writer's thread

    async def open(self) -> None:
        self._writer = _WriterThread(asyncio.get_running_loop(), self._write_batch)
        await self._run(self._connect)
        # Every connection to ":memory:" is a database of its own: there the writer reads too.
        if self.path != ":memory:":
            self._reads = ThreadPoolExecutor(
                self._reader_threads, thread_name_prefix="sqlite-reader"
            )

    async def close(self) -> None:
        self._closing = True  # no appends from now on; those queued are written first
        if self._reads is not None:
            reads, self._reads = self._reads, None
            await asyncio.to_thread(reads.shutdown)  # lets the reads under way finish
            for reader in self._readers:
                reader.close()
            self._readers.clear()
        if self._writer is not None:
            await self._run(self._disconnect)
            await self._writer.stop()
            self._writer = None

    def is_ready(self) -> bool:
        return self._conn is not None and not self._closing

    # -- the store's thread -------------------------------------------------------------------

    def _connect(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit survives power loss, not only a crash of this process.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.executescript(SCHEMA)
        conn.executescript(versions.SCHEMA)
        versions.upgrade(conn)
        conn.executescript(authorship.SCHEMA)
        self._conn = conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- reader threads -------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        """This reader thread's own connection."""
        conn: sqlite3.Connection | None = getattr(self._reader_of_thread, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA busy_timeout = 5000")
            self._reader_of_thread.conn = conn
            self._readers.append(conn)
        return conn

    @staticmethod
    def _read_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
        # A deferred BEGIN takes no lock: every statement of `work` reads the same snapshot,
        # the state after the last commit that finished before its first statement.
        conn.execute("BEGIN")
        try:
            return work(conn)
        finally:
            if conn.in_transaction:
                conn.execute("ROLLBACK")  # nothing was written; this only ends the snapshot

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the SQLite store is not open")
        return self._conn

    def _transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = work(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _seq_after(self, conn: sqlite3.Connection, room_id: str) -> int | None:
        """The room's last sequence number; None if there is no such room."""
        if conn.execute("SELECT 1 FROM rooms WHERE id = ?", (room_id,)).fetchone() is None:
            return None
        cached = self._next_seq.get(room_id)
        if cached is not None:
            return cached
        row = conn.execute(
            "SELECT max(coalesce((SELECT max(seq) FROM updates WHERE room = ?), 0),"
            " coalesce((SELECT through_seq FROM snapshots WHERE room = ?), 0))",
            (room_id, room_id),
        ).fetchone()
        return int(row[0])

    def _write_batch(self, batch: list[tuple[str, list[bytes]]]) -> AppendResults:
        """Write a batch of appends in one transaction; appends to missing rooms fail alone."""
        known = self._next_seq
        if all(room_id in known for room_id, _ in batch):
            # The usual case: no query first. A room deleted by another connection fails the
            # insert's foreign key, and the batch is written again with each room looked up.
            with contextlib.suppress(sqlite3.IntegrityError):
                return self._insert(batch, known)
        conn = self._db
        rooms = dict.fromkeys(room_id for room_id, _ in batch)
        return self._insert(batch, {room_id: self._seq_after(conn, room_id) for room_id in rooms})

    def _insert(
        self, batch: list[tuple[str, list[bytes]]], seq_before: Mapping[str, int | None]
    ) -> AppendResults:
        now = time.time()
        last: dict[str, int] = {}
        results: AppendResults = []
        rows: list[tuple[str, int, bytes, float]] = []
        for room_id, updates in batch:
            before = last[room_id] if room_id in last else seq_before[room_id]
            if before is None:
                results.append(RoomMissing(f"room {room_id!r} does not exist"))
                continue
            seqs = list(range(before + 1, before + 1 + len(updates)))
            last[room_id] = seqs[-1]
            rows.extend(zip(repeat(room_id), seqs, updates, repeat(now), strict=False))
            results.append(seqs)
        if len(rows) == 1:
            self._db.execute(INSERT_UPDATE, rows[0])  # one statement commits on its own
        elif rows:
            self._transaction(lambda conn: conn.executemany(INSERT_UPDATE, rows))
        self._next_seq.update(last)  # only once the commit succeeded
        return results

    # -- the event loop -----------------------------------------------------------------------

    async def _run(self, work: Callable[[], T]) -> T:
        """`work` on the writer's thread, after every write asked for before it."""
        if self._writer is None:
            raise StoreError("the SQLite store is not open")
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._writer.put(_Job(work, done))
        return await _as_store_errors(done)

    async def _read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work` in one read transaction on a reader thread; it sees every write whose call
        returned before this one was made."""
        if self.path == ":memory:":
            return await self._run(lambda: self._read_transaction(self._db, work))
        if self._reads is None:
            raise StoreError("the SQLite store is not open")

        def read() -> T:  # on the reader thread, with that thread's own connection
            return self._read_transaction(self._reader(), work)

        return await _as_store_errors(asyncio.get_running_loop().run_in_executor(self._reads, read))

    async def append(self, room_id: str, update: bytes) -> int:
        (seq,) = await self.append_many(room_id, [update])
        return seq

    async def append_many(self, room_id: str, updates: list[bytes]) -> list[int]:
        if self._writer is None or self._closing:
            raise StoreError("the SQLite store is closed")
        if not updates:
            return []
        done: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()
        self._writer.put(_PendingAppend(room_id, updates, done))
        return await done

    async def create_room(self, room_id: str, name: str, language: str | None) -> RoomRecord:
        def work(conn: sqlite3.Connection) -> None:
            now = time.time()
            try:
                conn.execute(
                    "INSERT INTO rooms (id, name, language, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (room_id, name, language, now, now),
                )
            except sqlite3.IntegrityError:
                raise RoomExists(f"room {room_id!r} already exists") from None

        await self._run(lambda: self._transaction(work))
        return await self._require(room_id)

    async def ensure_room(self, room_id: str) -> RoomRecord:
        # Mostly the room is there already: then the writer, and the appends queued for it,
        # are not asked at all.
        if (found := await self.get_room(room_id)) is not None:
            return found

        def work() -> None:
            now = time.time()
            self._db.execute(
                "INSERT OR IGNORE INTO rooms (id, name, language, created_at, updated_at)"
                " VALUES (?, ?, NULL, ?, ?)",
                (room_id, room_id, now, now),
            )

        await self._run(work)
        return await self._require(room_id)

    async def _require(self, room_id: str) -> RoomRecord:
        record = await self.get_room(room_id)
        if record is None:
            raise RoomMissing(f"room {room_id!r} does not exist")
        return record

    async def get_room(self, room_id: str) -> RoomRecord | None:
        def work(conn: sqlite3.Connection) -> RoomRecord | None:
            row = conn.execute(
                f"SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = ?", (room_id,)
            ).fetchone()
            return _record(row) if row else None

        return await self._read(work)

    async def list_rooms(self) -> list[RoomRecord]:
        def work(conn: sqlite3.Connection) -> list[RoomRecord]:
            rows = conn.execute(f"SELECT {ROOM_COLUMNS} FROM rooms r ORDER BY r.id")
            return [_record(row) for row in rows]

        return await self._read(work)

    async def page_rooms(self, limit: int, after: str | None = None) -> list[RoomRecord]:
        # The page's ids first: the sizes (sums over each room's log) only for those.
        newest = "ORDER BY created_at DESC, id DESC"
        arguments: tuple[object, ...]
        if after is None:
            page, arguments = f"SELECT id FROM rooms {newest} LIMIT ?", (limit,)
        else:
            page = (
                "SELECT id FROM rooms WHERE (created_at, id) <"
                f" (SELECT created_at, id FROM rooms WHERE id = ?) {newest} LIMIT ?"
            )
            arguments = (after, limit)

        def work(conn: sqlite3.Connection) -> list[RoomRecord]:
            rows = conn.execute(
                f"SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id IN ({page})"
                " ORDER BY r.created_at DESC, r.id DESC",
                arguments,
            )
            return [_record(row) for row in rows]

        return await self._read(work)

    async def set_language(self, room_id: str, language: str | None) -> None:
        def work() -> None:
            self._db.execute("UPDATE rooms SET language = ? WHERE id = ?", (language, room_id))

        await self._run(work)

    async def rename_room(self, room_id: str, name: str) -> bool:
        def work() -> bool:
            renamed = self._db.execute("UPDATE rooms SET name = ? WHERE id = ?", (name, room_id))
            return renamed.rowcount > 0

        return await self._run(work)

    async def delete_room(self, room_id: str) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            deleted = conn.execute("DELETE FROM rooms WHERE id = ?", (room_id,)).rowcount > 0
            self._next_seq.pop(room_id, None)
            return deleted

        return await self._run(lambda: self._transaction(work))

    async def load(self, room_id: str) -> StoredLog:
        def work(conn: sqlite3.Connection) -> StoredLog:
            if conn.execute("SELECT 1 FROM rooms WHERE id = ?", (room_id,)).fetchone() is None:
                raise RoomMissing(f"room {room_id!r} does not exist")
            snapshot = conn.execute(
                "SELECT data, through_seq FROM snapshots WHERE room = ?", (room_id,)
            ).fetchone()
            rows = conn.execute(
                "SELECT seq, data FROM updates WHERE room = ? ORDER BY seq", (room_id,)
            ).fetchall()
            last_seq = max(snapshot[1] if snapshot else 0, rows[-1][0] if rows else 0)
            return StoredLog(
                snapshot[0] if snapshot else None,
                [row[1] for row in rows],
                last_seq,
                [row[0] for row in rows],
            )

        # One read transaction: the snapshot and the log rows as one commit left them.
        return await self._read(work)

    async def last_seqs(self, room_ids: Sequence[str]) -> dict[str, int]:
        def work(conn: sqlite3.Connection) -> dict[str, int]:
            # As `load` reckons it: the newest row, or the snapshot when the log is empty.
            rows = conn.execute(
                "SELECT r.id, max("
                " coalesce((SELECT max(seq) FROM updates u WHERE u.room = r.id), 0),"
                " coalesce((SELECT through_seq FROM snapshots s WHERE s.room = r.id), 0))"
                " FROM rooms r WHERE r.id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(room_ids)),),
            )
            return {room_id: seq for room_id, seq in rows}

        return await self._read(work)

    async def discard(self, room_id: str, seqs: list[int]) -> int:
        def work(conn: sqlite3.Connection) -> int:
            removed = conn.executemany(
                "DELETE FROM updates WHERE room = ? AND seq = ?",
                zip(repeat(room_id), seqs, strict=False),
            )
            return removed.rowcount

        return await self._run(lambda: self._transaction(work))

    async def compact(
        self, room_id: str, snapshot: bytes, through_seq: int, keep: Sequence[int] = ()
    ) -> bool:
        def work(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT through_seq FROM snapshots WHERE room = ?", (room_id,)
            ).fetchone()
            if row is not None and row[0] >= through_seq:
                return False
            if conn.execute("SELECT 1 FROM rooms WHERE id = ?", (room_id,)).fetchone() is None:
                raise RoomMissing(f"room {room_id!r} does not exist")
            conn.execute(
                "INSERT OR REPLACE INTO snapshots (room, data, through_seq, created_at)"
                " VALUES (?, ?, ?, ?)",
                (room_id, snapshot, through_seq, time.time()),
            )
            conn.execute(
                "DELETE FROM updates WHERE room = ? AND seq <= ?"
                " AND seq NOT IN (SELECT value FROM json_each(?))",
                (room_id, through_seq, json.dumps(list(keep))),
            )
            return True

        return await self._run(lambda: self._transaction(work))

    # -- versions (the SQL is in sqlite_versions) -----------------------------------------------

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
        made = created_at.timestamp() if created_at is not None else time.time()
        return await self._run(
            lambda: self._transaction(
                lambda conn: versions.save(
                    conn, room_id, state, label, automatic, authors, made, base
                )
            )
        )

    async def page_versions(
        self, room_id: str, limit: int, before: int | None = None
    ) -> list[VersionRecord]:
        return await self._read(lambda conn: versions.page(conn, room_id, limit, before))

    async def get_version(self, room_id: str, version_id: int) -> VersionRecord | None:
        return await self._read(lambda conn: versions.get(conn, room_id, version_id))

    async def count_named_versions(self, room_id: str) -> int:
        return await self._read(lambda conn: versions.count_named(conn, room_id))

    async def version_parts(self, room_id: str, version_id: int) -> list[bytes] | None:
        return await self._read(lambda conn: versions.parts(conn, room_id, version_id))

    async def delete_version(self, room_id: str, version_id: int) -> bool:
        return await self._run(
            lambda: self._transaction(lambda conn: versions.delete(conn, room_id, version_id))
        )

    async def prune_versions(self, room_id: str, keep: int, older_than: datetime | None) -> int:
        before = older_than.timestamp() if older_than is not None else None
        return await self._run(
            lambda: self._transaction(lambda conn: versions.prune(conn, room_id, keep, before))
        )

    # -- authorship (the SQL is in sqlite_authorship) -------------------------------------------

    async def save_authorship(self, room_id: str, ranges: Sequence[AuthorRange]) -> None:
        await self._run(
            lambda: self._transaction(lambda conn: authorship.save(conn, room_id, ranges))
        )

    async def load_authorship(self, room_id: str) -> list[AuthorRange]:
        return await self._read(lambda conn: authorship.load(conn, room_id))
