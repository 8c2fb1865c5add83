"""The Store contract, run against every store: memory, SQLite (a temporary file) and PostgreSQL.

Stores hold bytes only, so the updates here are opaque byte strings; what they mean to Yjs is
tested where rooms are.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from persistence import (
    Author,
    AuthorRange,
    BaseVersionGone,
    RoomExists,
    RoomMissing,
    Store,
    open_store,
)
from tests import postgres

pytestmark = pytest.mark.anyio

STORES = ["memory", "sqlite", "postgresql"]
DURABLE = ["sqlite", "postgresql"]
MOMENT = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


async def _empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty store of the kind the fixture's parameter names."""
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/store.db"
    url: str = request.getfixturevalue("postgres_url")
    await postgres.clear(url)
    return url


@pytest.fixture(params=STORES)
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return await _empty_store_url(request, tmp_path)


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    opened = open_store(store_url)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


def _near(moment: datetime, other: datetime) -> bool:
    return abs(moment - other) < timedelta(seconds=5)


# -- rooms ------------------------------------------------------------------------------------


async def test_create_room_returns_its_record(store: Store) -> None:
    record = await store.create_room("r1", "Room one", "python")
    assert (record.id, record.name, record.language) == ("r1", "Room one", "python")
    assert (record.size_bytes, record.log_rows) == (0, 0)
    assert record.created_at.tzinfo is not None
    assert record.created_at == record.updated_at
    assert await store.get_room("r1") == record


async def test_create_room_refuses_a_taken_id(store: Store) -> None:
    await store.create_room("r1", "first", None)
    with pytest.raises(RoomExists):
        await store.create_room("r1", "second", None)
    record = await store.get_room("r1")
    assert record is not None and record.name == "first"


async def test_ensure_room_creates_once_named_after_its_id(store: Store) -> None:
    created = await store.ensure_room("r1")
    assert (created.id, created.name, created.language) == ("r1", "r1", None)
    await store.set_language("r1", "rust")
    again = await store.ensure_room("r1")
    assert again.created_at == created.created_at
    assert again.language == "rust"
    named = await store.create_room("r2", "Named", None)
    assert (await store.ensure_room("r2")).name == named.name == "Named"


async def test_get_room_of_an_unknown_id_is_none(store: Store) -> None:
    assert await store.get_room("nope") is None


async def test_list_rooms_is_ordered_by_id(store: Store) -> None:
    for room_id in ["b", "c", "a"]:
        await store.create_room(room_id, room_id.upper(), None)
    assert [(r.id, r.name) for r in await store.list_rooms()] == [
        ("a", "A"),
        ("b", "B"),
        ("c", "C"),
    ]


async def test_rooms_are_paged_newest_first(store: Store) -> None:
    for room_id in ["a", "b", "c", "d", "e"]:  # made one after the other: e is the newest
        await store.create_room(room_id, room_id.upper(), None)
    first = await store.page_rooms(2)
    assert [record.id for record in first] == ["e", "d"]
    assert first[0].name == "E"
    assert [record.id for record in await store.page_rooms(2, after="d")] == ["c", "b"]
    assert [record.id for record in await store.page_rooms(2, after="b")] == ["a"]
    assert await store.page_rooms(2, after="a") == []
    assert await store.page_rooms(2, after="gone") == []


async def test_set_language_is_kept_and_can_be_cleared(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    await store.set_language("r1", "go")
    assert (await store.get_room("r1")).language == "go"  # type: ignore[union-attr]
    await store.set_language("r1", None)
    assert (await store.get_room("r1")).language is None  # type: ignore[union-attr]


async def test_rename_room_changes_only_its_name(store: Store) -> None:
    await store.create_room("r1", "old", "go")
    await store.append("r1", b"u1")
    assert await store.rename_room("r1", "Pairing: é π") is True
    renamed = await store.get_room("r1")
    assert renamed is not None
    assert (renamed.name, renamed.language) == ("Pairing: é π", "go")
    assert (await store.load("r1")).updates == [b"u1"]
    assert await store.rename_room("ghost", "x") is False
    assert await store.get_room("ghost") is None


async def test_delete_room_removes_it_and_its_history(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    await store.append("r1", b"u1")
    await store.compact("r1", b"snap", 1)
    await store.append("r1", b"u2")
    assert await store.delete_room("r1") is True
    assert await store.get_room("r1") is None
    assert await store.list_rooms() == []
    with pytest.raises(RoomMissing):
        await store.load("r1")
    assert await store.delete_room("r1") is False
    # The id is free again, with an empty history.
    await store.create_room("r1", "again", None)
    log = await store.load("r1")
    assert (log.snapshot, log.updates, log.last_seq) == (None, [], 0)


# -- the log ----------------------------------------------------------------------------------


async def test_append_numbers_each_rooms_updates_from_one(store: Store) -> None:
    await store.create_room("a", "a", None)
    await store.create_room("b", "b", None)
    assert [await store.append("a", b"a1"), await store.append("a", b"a2")] == [1, 2]
    assert await store.append("b", b"b1") == 1
    assert await store.append("a", b"a3") == 3


async def test_concurrent_appends_get_distinct_numbers_in_order(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    updates = [f"u{i}".encode() for i in range(200)]
    seqs = await asyncio.gather(*(store.append("r1", update) for update in updates))
    assert sorted(seqs) == list(range(1, 201))
    log = await store.load("r1")
    # Updates are stored in the order their appends were made.
    assert log.updates == updates
    assert log.last_seq == 200


async def test_append_many_keeps_order_and_numbers_alongside_single_appends(
    store: Store,
) -> None:
    await store.create_room("r1", "r1", None)
    first = store.append("r1", b"alone")
    many = store.append_many("r1", [b"m1", b"m2", b"m3"])
    first_seq, many_seqs = await asyncio.gather(first, many)
    assert (first_seq, many_seqs) == (1, [2, 3, 4])
    assert await store.append_many("r1", [b"m4"]) == [5]
    assert (await store.load("r1")).updates == [b"alone", b"m1", b"m2", b"m3", b"m4"]


async def test_append_to_a_missing_room_fails_alone(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    results = await asyncio.gather(
        store.append("r1", b"ok1"),
        store.append("ghost", b"lost"),
        store.append("r1", b"ok2"),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], RoomMissing)
    assert (await store.load("r1")).updates == [b"ok1", b"ok2"]


async def test_append_counts_size_and_rows_and_touches_the_room(store: Store) -> None:
    created = await store.create_room("r1", "r1", None)
    await store.append("r1", b"12345")
    await store.append("r1", b"\x00\x01\x02")
    record = await store.get_room("r1")
    assert record is not None
    assert (record.size_bytes, record.log_rows) == (8, 2)
    assert record.updated_at >= created.updated_at
    assert record.created_at == created.created_at
    assert _near(record.updated_at, created.updated_at)


async def test_load_returns_the_snapshot_and_the_tail(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    empty = await store.load("r1")
    assert (empty.snapshot, empty.updates, empty.last_seq, empty.log_bytes) == (None, [], 0, 0)
    for i in range(1, 6):
        await store.append("r1", bytes([i]) * i)
    log = await store.load("r1")
    assert log.snapshot is None
    assert log.updates == [bytes([i]) * i for i in range(1, 6)]
    assert (log.last_seq, log.log_bytes) == (5, 15)


async def test_load_of_a_missing_room_raises(store: Store) -> None:
    with pytest.raises(RoomMissing):
        await store.load("ghost")


async def test_last_seqs_give_each_rooms_last_seq_as_load_does(store: Store) -> None:
    await store.create_room("a", "a", None)
    await store.create_room("b", "b", None)
    await store.create_room("quiet", "quiet", None)
    await store.append_many("a", [b"a1", b"a2", b"a3"])
    await store.append("b", b"b1")
    # The log of `b` is all in its snapshot now: the number stays.
    assert await store.compact("b", b"snapshot", 1)
    seqs = await store.last_seqs(["a", "b", "quiet", "ghost"])
    assert seqs == {"a": 3, "b": 1, "quiet": 0}
    for room_id in ("a", "b", "quiet"):
        assert (await store.load(room_id)).last_seq == seqs[room_id]
    assert await store.last_seqs([]) == {}


# -- discarding refused updates ----------------------------------------------------------------


async def test_discard_removes_those_updates_only(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    seqs = await store.append_many("r1", [b"u1", b"bad2", b"bad3", b"u4"])
    assert await store.discard("r1", seqs[1:3]) == 2
    assert await store.discard("r1", seqs[1:3]) == 0  # gone already
    log = await store.load("r1")
    assert (log.updates, log.last_seq) == ([b"u1", b"u4"], 4)
    record = await store.get_room("r1")
    assert record is not None
    assert (record.size_bytes, record.log_rows) == (4, 2)
    assert await store.append("r1", b"u5") == 5


# -- compaction -------------------------------------------------------------------------------


async def test_compact_replaces_the_covered_updates_by_the_snapshot(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    for i in range(1, 5):
        await store.append("r1", f"u{i}".encode())
    assert await store.compact("r1", b"S1-3", 3) is True
    log = await store.load("r1")
    assert (log.snapshot, log.updates, log.last_seq) == (b"S1-3", [b"u4"], 4)
    record = await store.get_room("r1")
    assert record is not None
    assert (record.size_bytes, record.log_rows) == (len(b"S1-3") + 2, 1)


async def test_compact_already_covered_changes_nothing(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    for i in range(1, 4):
        await store.append("r1", f"u{i}".encode())
    assert await store.compact("r1", b"S1-3", 3) is True
    assert await store.compact("r1", b"stale", 3) is False
    assert await store.compact("r1", b"older", 2) is False
    log = await store.load("r1")
    assert (log.snapshot, log.updates, log.last_seq) == (b"S1-3", [], 3)


async def test_appends_after_through_seq_are_kept_and_numbering_goes_on(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    for i in range(1, 4):
        await store.append("r1", f"u{i}".encode())
    through = (await store.load("r1")).last_seq
    # Appends that land between the load and the compaction (as in rooms/snapshot.py).
    assert await store.append("r1", b"u4") == 4
    assert await store.append("r1", b"u5") == 5
    assert await store.compact("r1", b"S1-3", through) is True
    assert await store.append("r1", b"u6") == 6
    log = await store.load("r1")
    assert (log.snapshot, log.updates, log.last_seq) == (b"S1-3", [b"u4", b"u5", b"u6"], 6)
    assert await store.compact("r1", b"S1-6", 6) is True
    assert await store.append("r1", b"u7") == 7  # numbers are never reused
    log = await store.load("r1")
    assert (log.snapshot, log.updates, log.last_seq) == (b"S1-6", [b"u7"], 7)


async def test_compact_keeps_the_updates_it_is_told_to_keep(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    for i in range(1, 6):
        await store.append("r1", f"u{i}".encode())
    assert await store.compact("r1", b"S1-4", 4, keep=[2, 4]) is True
    log = await store.load("r1")
    assert (log.snapshot, log.updates, log.seqs, log.last_seq) == (
        b"S1-4",
        [b"u2", b"u4", b"u5"],
        [2, 4, 5],
        5,
    )
    record = await store.get_room("r1")
    assert record is not None
    assert (record.size_bytes, record.log_rows) == (len(b"S1-4") + 6, 3)


async def test_compact_of_a_missing_room_raises(store: Store) -> None:
    with pytest.raises(RoomMissing):
        await store.compact("ghost", b"S", 1)


# -- versions -------------------------------------------------------------------------------


async def test_a_saved_version_is_read_back_with_its_state(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    saved = await store.save_version(
        "r1", b"state one", label="before refactor", automatic=False, authors=["Ada", "Bo"]
    )
    assert (saved.room_id, saved.label, saved.automatic) == ("r1", "before refactor", False)
    assert (saved.authors, saved.size_bytes) == (("Ada", "Bo"), 9)
    assert saved.created_at.tzinfo is not None and _near(saved.created_at, datetime.now(UTC))
    assert await store.get_version("r1", saved.id) == saved
    assert await store.version_parts("r1", saved.id) == [b"state one"]


async def test_versions_are_listed_newest_first_a_page_at_a_time(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    await store.create_room("r2", "r2", None)
    saved = [
        await store.save_version("r1", f"s{i}".encode(), label=None, automatic=True, authors=[])
        for i in range(5)
    ]
    await store.save_version("r2", b"other room", label=None, automatic=True, authors=[])
    first = await store.page_versions("r1", 2)
    assert first == [saved[4], saved[3]]
    assert saved[4].id > saved[3].id
    rest = await store.page_versions("r1", 10, before=first[-1].id)
    assert rest == [saved[2], saved[1], saved[0]]
    assert await store.page_versions("r1", 10, before=saved[0].id) == []
    assert await store.page_versions("nowhere", 10) == []


async def test_a_version_belongs_to_its_room(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    await store.create_room("r2", "r2", None)
    saved = await store.save_version("r1", b"s", label=None, automatic=True, authors=[])
    assert await store.get_version("r2", saved.id) is None
    assert await store.version_parts("r2", saved.id) is None
    assert not await store.delete_version("r2", saved.id)
    assert await store.get_version("r1", saved.id) == saved


async def test_a_version_of_a_missing_room_is_refused(store: Store) -> None:
    with pytest.raises(RoomMissing):
        await store.save_version("nowhere", b"s", label=None, automatic=True, authors=[])


async def test_a_deleted_version_is_gone_and_its_id_not_given_again(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    older = await store.save_version("r1", b"a", label=None, automatic=True, authors=[])
    newest = await store.save_version("r1", b"b", label=None, automatic=True, authors=[])
    assert await store.delete_version("r1", newest.id)
    assert not await store.delete_version("r1", newest.id)
    assert await store.get_version("r1", newest.id) is None
    assert await store.version_parts("r1", newest.id) is None
    again = await store.save_version("r1", b"c", label=None, automatic=True, authors=[])
    assert again.id > newest.id
    assert await store.page_versions("r1", 10) == [again, older]


async def test_an_incremental_version_reads_back_as_its_chain_whole_first(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    whole = await store.save_version("r1", b"W", label=None, automatic=True, authors=[])
    one = await store.save_version(
        "r1", b"+1", label=None, automatic=True, authors=[], base=whole.id
    )
    two = await store.save_version("r1", b"+2", label="n", automatic=False, authors=[], base=one.id)
    assert (one.base, two.base, two.size_bytes) == (whole.id, one.id, 2)
    assert await store.count_named_versions("r1") == 1  # `two`; the others are automatic
    assert await store.get_version("r1", two.id) == two
    assert await store.version_parts("r1", two.id) == [b"W", b"+1", b"+2"]
    assert await store.version_parts("r1", one.id) == [b"W", b"+1"]


async def test_a_deleted_base_is_hidden_until_nothing_is_built_on_it(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    whole = await store.save_version("r1", b"W", label=None, automatic=True, authors=[])
    one = await store.save_version(
        "r1", b"+1", label=None, automatic=True, authors=[], base=whole.id
    )
    two = await store.save_version("r1", b"+2", label=None, automatic=True, authors=[], base=one.id)
    assert await store.delete_version("r1", whole.id)
    assert await store.delete_version("r1", one.id)
    assert await store.count_named_versions("r1") == 0
    assert not await store.delete_version("r1", one.id)  # hidden is deleted, to everyone
    assert await store.get_version("r1", one.id) is None
    assert await store.version_parts("r1", one.id) is None
    assert await store.page_versions("r1", 10) == [two]
    assert await store.version_parts("r1", two.id) == [b"W", b"+1", b"+2"]
    # A change to a hidden version cannot be saved once the version is gone for good.
    assert await store.delete_version("r1", two.id)
    assert await store.page_versions("r1", 10) == []
    with pytest.raises(BaseVersionGone):
        await store.save_version("r1", b"+3", label=None, automatic=True, authors=[], base=two.id)
    with pytest.raises(BaseVersionGone):
        await store.save_version("r1", b"+3", label=None, automatic=True, authors=[], base=whole.id)


async def test_pruning_a_chain_keeps_what_the_kept_versions_are_built_on(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    chain = [await store.save_version("r1", b"W", label=None, automatic=True, authors=[])]
    for n in range(4):
        chain.append(
            await store.save_version(
                "r1", f"+{n}".encode(), label=None, automatic=True, authors=[], base=chain[-1].id
            )
        )
    assert await store.prune_versions("r1", 2, None) == 3
    assert await store.page_versions("r1", 10) == [chain[4], chain[3]]
    assert await store.version_parts("r1", chain[4].id) == [b"W", b"+0", b"+1", b"+2", b"+3"]
    assert await store.prune_versions("r1", 0, None) == 2
    assert await store.page_versions("r1", 10) == []
    assert await store.delete_room("r1")


async def test_compaction_keeps_versions_and_deleting_the_room_removes_them(store: Store) -> None:
    await store.create_room("r1", "r1", None)
    await store.append("r1", b"u1")
    saved = await store.save_version("r1", b"s", label="v", automatic=False, authors=["Ada"])
    await store.append("r1", b"u2")
    assert await store.compact("r1", b"S1-2", 2)
    assert await store.page_versions("r1", 10) == [saved]
    assert await store.delete_room("r1")
    await store.create_room("r1", "r1 again", None)
    assert await store.page_versions("r1", 10) == []
    assert await store.get_version("r1", saved.id) is None


async def test_authorship_is_kept_by_client_and_clock_and_a_range_saved_again_replaces_it(
    store: Store,
) -> None:
    await store.create_room("r1", "r1", None)
    await store.create_room("r2", "r2", None)
    ada, bob = Author("Ada", "ada-id"), Author("Bob 😀", self_declared=True)
    then = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    first = AuthorRange(2**40, 0, 5, ada, then)
    await store.save_authorship("r1", [first, AuthorRange(7, 3, 1, bob, then)])
    grown = AuthorRange(2**40, 0, 9, ada, then + timedelta(seconds=30))
    await store.save_authorship("r1", [grown])
    await store.save_authorship("r2", [AuthorRange(7, 0, 2, ada, then)])
    assert await store.load_authorship("r1") == [AuthorRange(7, 3, 1, bob, then), grown]
    assert await store.load_authorship("r2") == [AuthorRange(7, 0, 2, ada, then)]


async def test_authorship_goes_with_its_room_and_a_missing_room_takes_none(store: Store) -> None:
    ada = Author("Ada")
    now = datetime(2026, 1, 2, tzinfo=UTC)
    await store.save_authorship("nowhere", [AuthorRange(1, 0, 1, ada, now)])  # raises nothing
    assert await store.load_authorship("nowhere") == []
    await store.create_room("r1", "r1", None)
    await store.save_authorship("r1", [AuthorRange(1, 0, 1, ada, now)])
    assert await store.delete_room("r1")
    await store.create_room("r1", "r1 again", None)
    assert await store.load_authorship("r1") == []


async def test_pruning_removes_old_and_surplus_automatic_versions_and_keeps_named_ones(
    store: Store,
) -> None:
    await store.create_room("r1", "r1", None)
    await store.create_room("r2", "r2", None)
    old = datetime.now(UTC) - timedelta(days=40)
    ancient = await store.save_version(
        "r1", b"a", label=None, automatic=True, authors=[], created_at=old
    )
    named = await store.save_version(
        "r1", b"n", label="keep", automatic=False, authors=[], created_at=old
    )
    recent = [
        await store.save_version("r1", f"r{i}".encode(), label=None, automatic=True, authors=[])
        for i in range(4)
    ]
    other = await store.save_version("r2", b"o", label=None, automatic=True, authors=[])
    cutoff = datetime.now(UTC) - timedelta(days=30)
    assert await store.prune_versions("r1", 2, cutoff) == 3  # the ancient one and two surplus
    assert await store.page_versions("r1", 10) == [recent[3], recent[2], named]
    assert await store.get_version("r1", ancient.id) is None
    assert await store.page_versions("r2", 10) == [other]
    assert await store.prune_versions("r1", 10, None) == 0


# -- durability -------------------------------------------------------------------------------


@pytest.fixture(params=DURABLE)
async def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return await _empty_store_url(request, tmp_path)


async def _reopened(url: str, work: Callable[[Store], Awaitable[None]]) -> None:
    store = open_store(url)
    await store.open()
    try:
        await work(store)
    finally:
        await store.close()


async def test_close_writes_every_pending_append(durable_url: str) -> None:
    store = open_store(durable_url)
    await store.open()
    await store.create_room("r1", "r1", None)
    appends = [asyncio.create_task(store.append("r1", f"u{i}".encode())) for i in range(300)]
    await asyncio.sleep(0)  # one turn of the loop, in which every append gets queued
    await store.close()
    assert sorted(await asyncio.gather(*appends)) == list(range(1, 301))

    async def check(reopened: Store) -> None:
        log = await reopened.load("r1")
        assert log.updates == [f"u{i}".encode() for i in range(300)]

    await _reopened(durable_url, check)


async def test_everything_survives_a_reopen(durable_url: str) -> None:
    async def write(store: Store) -> None:
        await store.create_room("r1", "Room", "python")
        for i in range(1, 4):
            await store.append("r1", f"u{i}".encode())
        await store.compact("r1", b"S1-2", 2)
        await store.save_version("r1", b"V", label="named", automatic=False, authors=["Ada"])
        await store.save_authorship("r1", [AuthorRange(1, 0, 3, Author("Ada"), MOMENT)])

    async def check(store: Store) -> None:
        record = await store.get_room("r1")
        assert record is not None and (record.name, record.language) == ("Room", "python")
        log = await store.load("r1")
        assert (log.snapshot, log.updates, log.last_seq) == (b"S1-2", [b"u3"], 3)
        assert await store.append("r1", b"u4") == 4
        (version,) = await store.page_versions("r1", 10)
        assert (version.label, version.authors) == ("named", ("Ada",))
        assert await store.version_parts("r1", version.id) == [b"V"]
        assert await store.load_authorship("r1") == [AuthorRange(1, 0, 3, Author("Ada"), MOMENT)]

    await _reopened(durable_url, write)
    await _reopened(durable_url, check)
