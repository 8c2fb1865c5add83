"""The SQLite store reads beside its writer: a room loads while the write lock is held, and a
read sees every write that returned before it was made.

What every store must do is in test_store_contract.py; these are the SQLite store's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from persistence import RoomMissing
from persistence.sqlite import READER_THREADS, SCHEMA, SQLiteStore
from tests.polling import poll

pytestmark = pytest.mark.anyio

# Longer than the store's busy timeout (5 s), so a read that waits for the write lock fails
# with "database is locked" rather than with this guard.
GUARD_SECONDS = 30


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(str(tmp_path / "store.db"))
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


@contextmanager
def write_lock_held(path: str) -> Iterator[None]:
    """Another connection holds the database's write lock, as a long write would."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


async def _a_room_with_history(store: SQLiteStore) -> None:
    await store.create_room("r1", "r1", None)
    await store.append_many("r1", [b"u1", b"u2", b"u3"])
    assert await store.compact("r1", b"S1-2", 2)


async def test_reads_do_not_wait_for_the_write_lock(store: SQLiteStore) -> None:
    await _a_room_with_history(store)
    with write_lock_held(store.path), anyio.fail_after(GUARD_SECONDS):
        log = await store.load("r1")
        record = await store.get_room("r1")
        assert await store.last_seqs(["r1"]) == {"r1": 3}
        assert [room.id for room in await store.page_rooms(10)] == ["r1"]
        assert [room.id for room in await store.list_rooms()] == ["r1"]
    assert (log.snapshot, log.updates, log.last_seq) == (b"S1-2", [b"u3"], 3)
    assert record is not None and record.log_rows == 1


async def test_reads_go_on_while_an_append_waits_to_commit(store: SQLiteStore) -> None:
    await _a_room_with_history(store)
    with write_lock_held(store.path):
        append = asyncio.create_task(store.append("r1", b"u4"))
        await poll(lambda: store._writer is not None and store._writer.queued == 0)  # taken
        with anyio.fail_after(GUARD_SECONDS):
            log = await store.load("r1")
            assert await store.get_room("r1") is not None
        # The reads came back while the append still waited for the lock.
        assert not append.done()
        assert log.updates == [b"u3"]
    with anyio.fail_after(GUARD_SECONDS):
        assert await append == 4


async def test_a_read_sees_every_write_that_returned_before_it(store: SQLiteStore) -> None:
    await _a_room_with_history(store)
    # Each reader thread has read once, so none opens a fresh connection for the reads below.
    await asyncio.gather(*(store.load("r1") for _ in range(READER_THREADS * 4)))
    for seq in range(4, 24):
        assert await store.append("r1", f"u{seq}".encode()) == seq
        loads = await asyncio.gather(*(store.load("r1") for _ in range(READER_THREADS)))
        assert {log.last_seq for log in loads} == {seq}
        assert await store.last_seqs(["r1"]) == {"r1": seq}
    await store.create_room("r2", "r2", None)
    assert await store.get_room("r2") is not None
    assert await store.delete_room("r2")
    assert await store.get_room("r2") is None


async def test_an_append_to_a_room_another_connection_deleted_fails_alone(
    store: SQLiteStore,
) -> None:
    for room in ("r1", "r2"):
        await store.create_room(room, room, None)
        assert await store.append(room, b"u1") == 1  # the writer knows both rooms' numbers now
    before = await store.get_room("r2")
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("PRAGMA foreign_keys = ON")
        other.execute("DELETE FROM rooms WHERE id = 'r1'")
    finally:
        other.close()
    results = await asyncio.gather(
        store.append("r1", b"u2"), store.append("r2", b"u2"), return_exceptions=True
    )
    assert isinstance(results[0], RoomMissing)
    assert results[1] == 2
    log = await store.load("r2")
    assert log.updates == [b"u1", b"u2"]
    after = await store.get_room("r2")
    assert before is not None and after is not None and after.updated_at >= before.updated_at


async def test_the_writer_commits_durably(store: SQLiteStore) -> None:
    """`synchronous = FULL`: in WAL mode, NORMAL would leave a commit to the next checkpoint's
    fsync, and a power cut could take back what other clients had already seen."""

    def writer_settings() -> tuple[int, str]:
        conn = store._db
        return conn.execute("PRAGMA synchronous").fetchone()[0], conn.execute(
            "PRAGMA journal_mode"
        ).fetchone()[0]

    assert await store._run(writer_settings) == (2, "wal")


async def test_an_in_memory_database_reads_through_its_writer() -> None:
    # Every connection to ":memory:" opens a database of its own.
    store = SQLiteStore(":memory:")
    await store.open()
    try:
        await _a_room_with_history(store)
        log = await store.load("r1")
        assert (log.snapshot, log.updates, log.last_seq) == (b"S1-2", [b"u3"], 3)
        assert [room.id for room in await store.list_rooms()] == ["r1"]
    finally:
        await store.close()


async def test_a_database_from_before_incremental_versions_gains_them(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executescript(SCHEMA)
        conn.executescript(VERSIONS_BEFORE_INCREMENTS)
        conn.execute("INSERT INTO rooms (id, name, created_at, updated_at) VALUES ('r', 'r', 0, 0)")
        conn.execute(
            "INSERT INTO versions (room, created_at, label, automatic, authors, data)"
            " VALUES ('r', 0, 'old', 0, '[]', x'01')"
        )
        conn.commit()
    store = SQLiteStore(path)
    await store.open()
    try:
        (old,) = await store.page_versions("r", 10)
        assert (old.label, old.base) == ("old", None)
        change = await store.save_version(
            "r", b"\x02", label=None, automatic=True, authors=[], base=old.id
        )
        assert await store.version_parts("r", change.id) == [b"\x01", b"\x02"]
    finally:
        await store.close()


# The versions table as the server before incremental versions made it.
VERSIONS_BEFORE_INCREMENTS = """
CREATE TABLE versions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    room TEXT NOT NULL REFERENCES rooms (id) ON DELETE CASCADE,
    created_at REAL NOT NULL,
    label TEXT,
    automatic INTEGER NOT NULL,
    authors TEXT NOT NULL,
    data BLOB NOT NULL
);
"""
