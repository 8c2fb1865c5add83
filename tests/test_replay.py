"""Live equals replayed: what a room holds in memory is what a restart rebuilds from its store.

The live document applied each intake batch merged into one update while a restart replayed the
stored updates one by one; for some sequences the two differed (one room had 130 characters
before a restart and 18 after). Here random editing sessions, multi-byte text and edits at byte
offsets inside characters included, go through a room in random batches from several
connections at once, and the room's document is compared with a replay of its store.
"""

from __future__ import annotations

import asyncio
import random
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pycrdt import Doc, Map, Text

from collab_server.metrics import Metrics
from collab_server.protocol.update import UpdateLimits, UpdateRefused, decode_update
from collab_server.rooms import snapshot
from collab_server.rooms.client_state import decode_state_vector
from collab_server.rooms.compaction import Compaction
from collab_server.rooms.document import is_panic
from collab_server.rooms.jobs import Jobs
from collab_server.rooms.registry import RoomRegistry
from collab_server.rooms.room import Room
from collab_server.rooms.snapshot import compact, log_parts, replay
from collab_server.settings import Settings
from persistence.memory import MemoryStore
from tests.rawupdates import empty_client_block, text_item

pytestmark = pytest.mark.anyio

PIECES = ("a", "é", "中", "😀", "👋🏽", "xy\n", "")


def editing_session(
    seed: int, clients: int = 3, edits: int = 60, *, careless: bool = True
) -> list[bytes]:
    """The updates a few pycrdt clients send, in the order the server gets them; `careless`
    clients edit at byte offsets, often inside characters, careful ones between characters."""
    rng = random.Random(seed)
    # Yjs picks 32-bit client ids, pycrdt 53-bit ones.
    docs: list[Doc[Any]] = [
        Doc(client_id=rng.getrandbits(rng.choice((32, 53)))) for _ in range(clients)
    ]
    sent: list[bytes] = []
    for _ in range(edits):
        doc = rng.choice(docs)
        text = doc.get("codemirror", type=Text)
        before = doc.get_state()
        try:
            content = str(text)
            offsets = (
                list(range(len(content.encode()) + 1))
                if careless
                else [len(content[:index].encode()) for index in range(len(content) + 1)]
            )
            choice = rng.random()
            if choice < 0.1:
                doc.get("meta", type=Map)["language"] = rng.choice(["python", "go"])
            elif choice < 0.6 or len(offsets) == 1:
                text.insert(rng.choice(offsets), rng.choice(PIECES) or "b")
            else:
                start = rng.randrange(len(offsets) - 1)
                end = min(len(offsets) - 1, start + rng.randint(1, 4))
                del text[offsets[start] : offsets[end]]
        except BaseException as error:  # pycrdt itself panics on some of these
            if not (is_panic(error) or isinstance(error, ValueError)):
                raise
            continue
        update = doc.get_update(before)
        if update != b"\x00\x00":
            sent.append(update)
        if rng.random() < 0.3:  # another client hears of it
            other = rng.choice(docs)
            try:
                other.apply_update(doc.get_update(other.get_state()))
            except BaseException as error:
                if not is_panic(error):
                    raise
    return sent


async def send(room: Room, updates: list[bytes], rng: random.Random) -> list[bytes]:
    """Send in random batches, as one connection's intake would; return what was refused."""
    refused = []
    while updates:
        size = rng.randint(1, 8)
        batch, updates = updates[:size], updates[size:]
        decoded = []
        for data in batch:
            try:
                decoded.append(await room.check(data))
            except UpdateRefused:
                refused.append(data)
        try:
            await room.store_updates(decoded, origin=None)
        except UpdateRefused:
            # Those before the refused one were stored; sent again one by one, they change
            # nothing (a CRDT update applies once), and the refused one is found.
            for update in decoded:
                try:
                    await room.store_updates([update], origin=None)
                except UpdateRefused:
                    refused.append(update.data)
    return refused


def picture(doc: Doc[Any]) -> tuple[str, dict[str, Any], dict[int, int]]:
    return (
        str(doc.get("codemirror", type=Text)),
        doc.get("meta", type=Map).to_py() or {},
        decode_state_vector(doc.get_state()),
    )


@pytest.mark.parametrize("seed", range(20))
async def test_careful_clients_are_never_refused(seed: int) -> None:
    """Edits between characters (emoji and CJK too), as every Yjs client makes them."""
    settings = Settings(store_url="memory://", completion_workers=0)
    store = MemoryStore()
    sessions = [editing_session(seed * 10 + n, careless=False) for n in range(2)]
    async with RoomRegistry(store, settings, Metrics()) as registry, registry.lease("r") as room:
        rng = random.Random(seed)
        refusals = await asyncio.gather(
            *(send(room, s, random.Random(rng.random())) for s in sessions)
        )
        assert refusals == [[], []]
        replayed = replay(log_parts(await store.load("r")), registry.limits).doc
        await compact(store, "r", registry.limits)
        compacted = replay(log_parts(await store.load("r")), registry.limits).doc
        assert picture(replayed) == picture(room.doc) == picture(compacted)


@pytest.mark.parametrize("seed", range(40))
async def test_the_live_document_is_what_a_replay_of_the_store_gives(seed: int) -> None:
    settings = Settings(store_url="memory://", completion_workers=0)
    store = MemoryStore()
    rng = random.Random(seed)
    sessions = [editing_session(seed * 10 + n) for n in range(2)]
    async with RoomRegistry(store, settings, Metrics()) as registry, registry.lease("r") as room:
        refusals = await asyncio.gather(
            *(send(room, s, random.Random(rng.random())) for s in sessions)
        )
        replayed = replay(log_parts(await store.load("r")), registry.limits).doc
        assert picture(replayed) == picture(room.doc)
        # As when the room goes idle: its log was checked by its intake, so yrs alone builds it.
        await compact(store, "r", registry.limits, checked=True)
        compacted = replay(log_parts(await store.load("r")), registry.limits).doc
        assert picture(compacted) == picture(room.doc)
        # What waits for a missing update waits alike: give both what was refused. (A compacted
        # document's blocks have another history, which yrs does not always treat alike.)
        for update in [u for refused in refusals for u in refused]:
            for doc in (room.doc, replayed):
                try:
                    doc.apply_update(update)
                except BaseException as error:
                    if not (is_panic(error) or isinstance(error, ValueError)):
                        raise
        assert picture(replayed) == picture(room.doc)


# Two updates the million-frame fuzz run had a room accept (a format and "é" in root "notes",
# then two emoji and an "x" whose origin names a client nobody has): yrs then wrote the document
# back with an empty struct, which its next replay refused, and every compaction of the room
# failed with an error.
UNREADABLE_ENCODING = [
    bytes.fromhex(
        "02039e9190a4f8e19201002600e2accb9da5cbde0e070004626f6c640474727565849e9190a4f8e192010003"
        "65cc81849e9190a4f8e192010208f09f9880f09f988001879c8ad30200849e9190a4f8e1920104017800"
    ),
    bytes.fromhex(
        "01039e9190a4f8e19201000601056e6f74657304626f6c640474727565849e9190a4f8e19201000365cc8186"
        "9e9190a4f8e192010204626f6c64046e756c6c00"
    ),
]


@pytest.mark.parametrize("checked", [False, True])
async def test_a_snapshot_that_would_not_read_back_is_not_written(checked: bool) -> None:
    # A log checked before is not checked again; the snapshot made of it always is.
    store = MemoryStore()
    await store.open()
    await store.ensure_room("fuzzed")
    await store.append_many("fuzzed", UNREADABLE_ENCODING)
    assert not await compact(store, "fuzzed", checked=checked)  # the log is kept as it is
    log = await store.load("fuzzed")
    assert log.snapshot is None
    assert list(log.updates) == UNREADABLE_ENCODING


def test_a_checked_log_is_squashed_without_decoding_it_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parts = editing_session(7, careless=False)
    decoded: list[bytes] = []

    def counting_decode(update: bytes, *args: Any, **kwargs: Any) -> Any:
        decoded.append(update)
        return decode_update(update, *args, **kwargs)

    monkeypatch.setattr(snapshot, "decode_update", counting_decode)
    squashed = snapshot.squash(parts, checked=True)
    assert squashed is not None
    assert decoded == [squashed.snapshot, *(parts[i] for i in squashed.kept)]
    decoded.clear()
    assert snapshot.squash(parts) == squashed  # unchecked: every part decoded first
    assert decoded[: len(parts)] == parts


@pytest.mark.parametrize("broken", [False, True])
async def test_only_a_sound_loaded_room_s_log_skips_the_checks_when_compacted(
    broken: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A broken room may have refused an update another process stored (one nested 60,000
    # deep, say): compaction must check it before yrs sees it.
    compacted: list[bool] = []

    async def recording_compact(*args: Any, checked: bool = False, **kwargs: Any) -> bool:
        compacted.append(checked)
        return False

    monkeypatch.setattr(snapshot, "compact", recording_compact)
    room = cast(Room, SimpleNamespace(id="r", log_rows=3, log_bytes=30, broken=broken))
    compaction = Compaction(MemoryStore(), UpdateLimits(), Jobs(), after_updates=1, after_bytes=1)
    await compaction.at_unload(room)
    assert compacted == [not broken]


@pytest.mark.parametrize("seed", range(20))
def test_a_stored_log_built_in_one_transaction_is_the_log_applied_one_by_one(seed: int) -> None:
    # Out of order too: what waits for a missing update waits alike, and is kept alike.
    parts = editing_session(seed, careless=False)
    random.Random(seed).shuffle(parts)
    one_by_one = replay(parts, UpdateLimits()).doc
    built = snapshot.build_stored(parts)
    assert picture(built) == picture(one_by_one)
    assert snapshot._fingerprint(built) == snapshot._fingerprint(one_by_one)
    assert built.get_update() == one_by_one.get_update()


def test_a_stored_log_yrs_panics_on_is_reported_not_raised_from_its_one_transaction() -> None:
    # The panic happens inside the transaction that holds the whole log: what leaves it is the
    # report the registry quarantines the room for, not yrs's PanicException (a BaseException).
    parts = [text_item(1, "ok"), empty_client_block(1, 10), text_item(2, "never")]
    with pytest.raises(snapshot.LogUnreplayable) as raised:
        snapshot.build_stored(parts)
    assert raised.value.index == 1


async def test_rooms_that_fill_their_logs_together_are_compacted_one_after_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running: list[str] = []
    overlapped: list[list[str]] = []
    done: list[str] = []

    async def slow_compact(store: Any, room_id: str, *args: Any, **kwargs: Any) -> bool:
        running.append(room_id)
        overlapped.append(list(running))
        await asyncio.sleep(0.01)
        running.remove(room_id)
        done.append(room_id)
        return True

    monkeypatch.setattr(snapshot, "compact", slow_compact)
    store = MemoryStore()
    await store.open()
    rooms = [
        cast(Room, SimpleNamespace(id=f"r{n}", log_rows=2, log_bytes=20, broken=False))
        for n in range(4)
    ]
    async with Jobs() as jobs:
        compaction = Compaction(store, UpdateLimits(), jobs, after_updates=2, after_bytes=1 << 20)
        for room in rooms:
            compaction.after_append(room)
    assert sorted(done) == ["r0", "r1", "r2", "r3"]
    assert all(len(at_once) == 1 for at_once in overlapped)
    assert all(room.log_rows == 0 for room in rooms)
