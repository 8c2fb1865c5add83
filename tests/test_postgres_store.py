"""What only the PostgreSQL store has: several writers per room, compaction racing appends,
migrations racing each other, and riding out a database that cannot be reached.

Outages here are made with a TCP proxy between the store and the server (tests/postgres.py), so
they cut this store off without stopping the PostgreSQL that other tests use;
test_postgres_outage.py stops the real server.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import asyncpg
import pytest
from pycrdt import Text

from collab_server.rooms import snapshot
from persistence import BUFFERED, StoreUnavailable, postgres_writer
from persistence.postgres import PostgresStore
from persistence.schema import migrations
from tests import postgres
from tests.helpers import keystrokes
from tests.polling import poll

pytestmark = pytest.mark.anyio


@pytest.fixture
async def url(postgres_url: str) -> str:
    await postgres.clear(postgres_url)
    return postgres_url


async def test_appends_racing_compactions_from_two_stores_are_all_kept(url: str) -> None:
    """Writers on two stores (two server processes, as far as the database can tell) type into
    one room while it is compacted over and over; every keystroke is in the room afterwards."""
    texts = {f"w{i}": f"writer {i} types this line;" * 4 for i in range(8)}
    async with postgres.opened_store(url) as first, postgres.opened_store(url) as second:
        await first.create_room("r", "r", None)
        seqs: list[int] = []
        compactions = 0
        writing = True

        async def write(name: str, store: PostgresStore) -> None:
            for update in keystrokes(name, texts[name]):
                seqs.append(await store.append("r", update))

        async def compact(store: PostgresStore) -> None:
            nonlocal compactions
            while writing:
                compactions += await snapshot.compact(store, "r")

        async with asyncio.TaskGroup() as tasks:
            compactors = [tasks.create_task(compact(store)) for store in (first, second)]
            async with asyncio.TaskGroup() as writers:
                for i, name in enumerate(texts):
                    writers.create_task(write(name, (first, second)[i % 2]))
            writing = False
            await asyncio.gather(*compactors)

        total = sum(len(text) for text in texts.values())
        assert sorted(seqs) == list(range(1, total + 1))  # unique across both stores
        assert compactions >= 3
        log = await first.load("r")
        assert log.snapshot is not None and len(log.updates) < total
        doc = snapshot.doc_from_log(log)
        assert {name: str(doc.get(name, type=Text)) for name in texts} == texts
        record = await first.get_room("r")
        assert record is not None
        assert record.log_rows == len(log.updates)
        assert record.size_bytes == len(log.snapshot) + log.log_bytes


async def test_two_stores_number_each_rooms_updates_without_gaps_or_repeats(url: str) -> None:
    async with postgres.opened_store(url) as first, postgres.opened_store(url) as second:
        rooms = ["a", "b", "c"]
        for room in rooms:
            await first.create_room(room, room, None)
        appends = [
            (store, rooms[i % 3], f"{i}".encode())
            for i in range(600)
            for store in [(first, second)[i % 2]]
        ]
        seqs = await asyncio.gather(*(store.append(room, data) for store, room, data in appends))
        for room in rooms:
            mine = sorted(seq for (_, r, _), seq in zip(appends, seqs, strict=True) if r == room)
            assert mine == list(range(1, 201))
            log = await second.load(room)
            assert sorted(log.updates) == sorted(d for _, r, d in appends if r == room)


async def test_stores_opening_at_once_on_an_empty_database_migrate_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="persistence.schema")
    async with postgres.fresh_database("collab_migrate") as empty:
        stores = [PostgresStore(empty) for _ in range(4)]
        try:
            await asyncio.gather(*(store.open() for store in stores))
            await stores[0].create_room("r", "r", None)
            assert await stores[3].append("r", b"u") == 1
        finally:
            await asyncio.gather(*(store.close() for store in stores))
        # Each migration applied once, by one of the four.
        applied = [r for r in caplog.records if r.getMessage().startswith("applied migration")]
        assert len(applied) == len(migrations()) == 4
        conn = await asyncpg.connect(empty)
        try:
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 4
        finally:
            await conn.close()


async def test_an_outage_buffers_in_order_refuses_beyond_the_bound_and_flushes(url: str) -> None:
    port = urlsplit(url).port or 5432
    async with (
        postgres.TcpProxy(port) as proxy,
        postgres.opened_store(
            postgres.with_port(url, proxy.port), outage_buffer_bytes=1000
        ) as store,
    ):
        await store.create_room("r", "r", None)
        assert await store.append("r", b"before") == 1
        assert store.is_ready()

        proxy.cut()
        await poll(lambda: not store.is_ready())
        accepted: list[bytes] = []
        with pytest.raises(StoreUnavailable, match="refusing more"):
            for i in range(100):
                update = f"during {i:03d} ".encode() * 10  # 110 bytes
                assert await store.append("r", update) == BUFFERED
                accepted.append(update)
        assert len(accepted) == 1000 // 110
        with pytest.raises(StoreUnavailable):
            await store.load("r")  # a room not in memory cannot be loaded
        with pytest.raises(StoreUnavailable):
            await store.get_room("r")

        proxy.restore()
        await poll(store.is_ready)
        log = await store.load("r")
        assert log.updates == [b"before", *accepted]  # in the order they were accepted
        assert log.last_seq == 1 + len(accepted)
        assert await store.append("r", b"after") == log.last_seq + 1  # durable again


async def test_appends_in_flight_when_the_connection_drops_are_written_later(url: str) -> None:
    """Writers keep appending through a cut: each is told a sequence number or BUFFERED, and
    each one's updates are all in the log afterwards, in its order (a batch cut off in its
    commit may be written twice; Yjs ignores the copy)."""
    port = urlsplit(url).port or 5432
    async with (
        postgres.TcpProxy(port) as proxy,
        postgres.opened_store(postgres.with_port(url, proxy.port)) as store,
    ):
        await store.create_room("r", "r", None)
        answers: list[int] = []
        cut = asyncio.Event()

        async def write(writer: int) -> None:
            for i in range(60):
                answers.append(await store.append("r", f"{writer}:{i}".encode()))
                if len(answers) == 300:
                    proxy.cut()
                    cut.set()
                elif len(answers) == 600:
                    proxy.restore()

        async with asyncio.TaskGroup() as tasks:
            for writer in range(20):
                tasks.create_task(write(writer))
        assert cut.is_set()
        assert BUFFERED in answers and any(answer > 0 for answer in answers)
        await poll(store.is_ready)
        log = await store.load("r")
        for writer in range(20):
            mine = [u for u in dict.fromkeys(log.updates) if u.startswith(f"{writer}:".encode())]
            assert mine == [f"{writer}:{i}".encode() for i in range(60)]


async def test_an_idle_writer_checks_its_connection_after_every_stretch_of_work(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a ping interval has passed with the writer waiting, its connection has run a ping,
    after the first append as after later ones."""
    monkeypatch.setattr(postgres_writer, "IDLE_PING_SECONDS", 0.2)
    observer = await asyncpg.connect(url)
    try:
        async with postgres.opened_store(url) as store:
            await store.create_room("r", "r", None)
            for round_ in range(3):
                await store.append("r", f"u{round_}".encode())
                writer_pid = await observer.fetchval(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    " AND query LIKE '%WITH batch AS%'"
                )
                assert writer_pid is not None

                async def pinged(pid: int = writer_pid) -> bool:
                    query = await observer.fetchval(
                        "SELECT query FROM pg_stat_activity WHERE pid = $1", pid
                    )
                    return bool(query == "SELECT 1")

                await poll(pinged, seconds=5)
    finally:
        await observer.close()
