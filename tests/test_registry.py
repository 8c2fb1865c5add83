"""The room registry's leases: only a lease that may create a room brings one into being."""

from __future__ import annotations

import asyncio

import pytest

from collab_server.metrics import Metrics
from collab_server.rooms.openings import Openings, RoomsBusy
from collab_server.rooms.registry import RoomRegistry
from collab_server.rooms.room import Room
from collab_server.settings import Settings
from persistence import RoomMissing, RoomRecord, StoredLog
from persistence.memory import MemoryStore

pytestmark = pytest.mark.anyio


async def watch(registry: RoomRegistry, room_id: str) -> str:
    """A viewer's lease: the room's id, or "missing"."""
    try:
        async with registry.lease(room_id, create=False) as room:
            return room.id
    except RoomMissing:
        return "missing"


async def test_a_lease_that_may_not_create_finds_no_room_and_makes_none() -> None:
    store = MemoryStore()
    async with RoomRegistry(store, Settings(store_url="memory://"), Metrics()) as registry:
        with pytest.raises(RoomMissing):
            async with registry.lease("absent", create=False):
                pass
        assert await store.get_room("absent") is None
        async with registry.lease("absent") as room:  # a joining editor's lease creates it
            assert room.id == "absent"
        async with registry.lease("absent", create=False) as again:
            assert again is room


async def test_a_creating_lease_that_joins_a_load_which_may_not_create_still_gets_its_room() -> (
    None
):
    store = MemoryStore()
    async with RoomRegistry(store, Settings(store_url="memory://"), Metrics()) as registry:

        async def join() -> str:
            async with registry.lease("new") as room:
                return room.id

        watched, joined = await asyncio.gather(
            watch(registry, "new"), join()
        )  # the viewer's load goes first
        assert joined == "new"
        assert watched in ("new", "missing")
        assert await store.get_room("new") is not None


class GatedStore(MemoryStore):
    """A memory store whose methods named in `gates` wait for their gate to open: to stop a load
    or a deletion half way, as a slow disk does."""

    def __init__(self, *gated: str) -> None:
        super().__init__()
        self.gates = {name: asyncio.Event() for name in gated}
        self.arrived = {name: asyncio.Event() for name in gated}  # a call waits at the gate
        self.answering = asyncio.Event()  # set as a gated get_room answers, in the same step

    def gate(self, name: str) -> None:
        self.gates[name] = asyncio.Event()
        self.arrived[name] = asyncio.Event()

    async def _pass(self, name: str) -> None:
        gate = self.gates.get(name)
        if gate is not None:
            self.arrived[name].set()
            await gate.wait()

    async def get_room(self, room_id: str) -> RoomRecord | None:
        await self._pass("get_room")
        self.answering.set()
        return await super().get_room(room_id)

    async def ensure_room(self, room_id: str) -> RoomRecord:
        await self._pass("ensure_room")
        return await super().ensure_room(room_id)

    async def delete_room(self, room_id: str) -> bool:
        await self._pass("delete_room")
        return await super().delete_room(room_id)

    async def load(self, room_id: str) -> StoredLog:
        log = await super().load(room_id)  # read; the answer is still on its way
        await self._pass("load")
        return log


async def test_an_editor_arriving_as_a_viewers_load_fails_gets_the_room_without_spinning() -> None:
    store = GatedStore("get_room")
    async with RoomRegistry(store, Settings(store_url="memory://"), Metrics()) as registry:

        async def editor() -> str:
            # Woken as the viewer's load finds nothing: it runs once that load has failed, and
            # before the failed load is cleared away.
            await store.answering.wait()
            async with registry.lease("x") as room:
                return room.id

        watching = asyncio.create_task(watch(registry, "x"))
        joining = asyncio.create_task(editor())
        await store.arrived["get_room"].wait()  # the viewer's load waits in get_room
        store.gates["get_room"].set()
        # A lease that spun on the failed load would hold the event loop here for good.
        assert list(await asyncio.gather(watching, joining)) == ["missing", "x"]


async def test_leases_share_one_room_after_a_failed_load_was_replaced() -> None:
    store = GatedStore("get_room", "ensure_room")
    async with RoomRegistry(store, Settings(store_url="memory://"), Metrics()) as registry:
        leave = asyncio.Event()

        async def editor(after: asyncio.Event, asking: asyncio.Event) -> Room:
            await after.wait()
            asking.set()  # it asks now, and the lease joins or starts a load before it suspends
            async with registry.lease("x") as room:
                await leave.wait()
                return room

        watching = asyncio.create_task(watch(registry, "x"))
        # Arrives just as the viewer's load fails, and starts a load of its own, which then
        # waits in ensure_room while the failed load is cleared away.
        first = asyncio.create_task(editor(store.answering, asyncio.Event()))
        await store.arrived["get_room"].wait()
        store.gates["get_room"].set()
        assert await watching == "missing"
        await store.arrived["ensure_room"].wait()
        go, second_asked = asyncio.Event(), asyncio.Event()
        second = asyncio.create_task(editor(go, second_asked))  # must join the first's load
        go.set()
        await second_asked.wait()
        store.gates["ensure_room"].set()
        leave.set()
        rooms = list(await asyncio.gather(first, second))
        assert rooms[0] is rooms[1]


async def test_a_room_deleted_while_it_loads_does_not_come_back() -> None:
    store = GatedStore()
    await store.create_room("x", "x", None)
    await store.append("x", b"\x00\x00")
    async with RoomRegistry(store, Settings(store_url="memory://"), Metrics()) as registry:
        store.gate("load")
        reading = asyncio.create_task(watch(registry, "x"))
        await store.arrived["load"].wait()  # the load has read the room; its log is on the way
        assert await registry.delete("x") is True
        store.gates["load"].set()
        assert await reading == "missing"
        assert registry.loaded("x") is None
        with pytest.raises(RoomMissing):
            async with registry.lease("x", create=False):
                pass


async def test_a_room_loaded_while_a_delete_is_under_way_is_gone_once_it_returns() -> None:
    store = GatedStore("delete_room")
    await store.create_room("x", "x", None)
    async with RoomRegistry(store, Settings(store_url="memory://"), Metrics()) as registry:
        deleting = asyncio.create_task(registry.delete("x"))
        await store.arrived["delete_room"].wait()  # the room is still in the store
        async with registry.lease("x", create=False) as room:
            pass
        store.gates["delete_room"].set()
        assert await deleting is True
        assert room.deleted and registry.loaded("x") is None
        with pytest.raises(RoomMissing):
            async with registry.lease("x", create=False):
                pass


def test_openings_refill_evenly_per_address() -> None:
    now = [0.0]
    openings = Openings(60, now=lambda: now[0])  # one a second, sixty at once
    for _ in range(60):
        openings.take("a")
    with pytest.raises(RoomsBusy) as refused:
        openings.take("a")
    assert refused.value.per_client and 0 < refused.value.retry_after <= 1
    openings.take("b")  # another address has its own bucket
    openings.take(None)  # the server's own work is never limited
    now[0] += 1.0
    openings.take("a")
    with pytest.raises(RoomsBusy):
        openings.take("a")
