"""`UpdateIntake`, one client's updates on their way into its room, against a real `Room` on a
`MemoryStore` whose appends can be held: what queues during a commit goes as the next batch, in
order; a sender is held back at the limit; a failed batch is reported once and nothing behind it
is stored. No server, no socket."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from collab_server.protocol.update import UpdateLimits
from collab_server.rooms.admission import CheckedUpdate
from collab_server.rooms.intake import UpdateIntake
from collab_server.rooms.room import Room
from collab_server.rooms.snapshot import load_stored
from persistence import StoreError, StoreUnavailable
from persistence.memory import MemoryStore
from tests.helpers import FakeSocket, keystrokes, text_of

pytestmark = pytest.mark.anyio

SECONDS = 5  # a bound on each test's waits; each takes milliseconds
ROOM = "r"
LIMITS = UpdateLimits()


class HeldStore(MemoryStore):
    """A memory store whose appends wait while `gate` is clear, and then raise `failure` if one
    is set; `batches` records the size of each append."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()  # an append has reached the gate
        self.failure: StoreError | None = None
        self.batches: list[int] = []

    async def append_many(self, room_id: str, updates: list[bytes]) -> list[int]:
        self.batches.append(len(updates))
        self.arrived.set()
        await self.gate.wait()
        if self.failure is not None:
            raise self.failure
        return await super().append_many(room_id, updates)


class Setup:
    """A room on a held store, one peer's intake into it, and what the intake reported."""

    def __init__(self, store: HeldStore, room: Room, socket: FakeSocket, limit: int) -> None:
        self.store = store
        self.room = room
        self.socket = socket
        self.peer = socket.peer(ROOM)
        self.failures: list[Exception] = []
        self.intake = UpdateIntake(room, self.peer, on_failure=self.failures.append, limit=limit)

    async def checked(self, text: str) -> list[CheckedUpdate]:
        """One update per character of `text`, each by a client of its own into the empty
        document (so none waits for another, and any order is visible in the store), decoded
        as the connection decodes what it reads."""
        updates = [keystrokes("codemirror", char)[0] for char in text]
        return [await self.room.check(update) for update in updates]

    async def stored(self) -> list[bytes]:
        return (await self.store.load(ROOM)).updates


@asynccontextmanager
async def intake_running(limit: int = 64) -> AsyncIterator[Setup]:
    store = HeldStore()
    await store.ensure_room(ROOM)
    room = Room(ROOM, load_stored([], LIMITS), store, limits=LIMITS)
    setup = Setup(store, room, FakeSocket(), limit)
    room.join(setup.peer)
    with anyio.fail_after(SECONDS):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(setup.intake.run)
            yield setup
            tasks.cancel_scope.cancel()  # the intake runs until cancelled


async def test_updates_queued_during_a_commit_are_stored_as_the_next_batch_in_order() -> None:
    async with intake_running() as setup:
        updates = await setup.checked("hello")
        setup.store.gate.clear()
        await setup.intake.put(updates[0])
        await setup.store.arrived.wait()  # the first is being committed
        for update in updates[1:]:
            await setup.intake.put(update)
        setup.store.gate.set()
        await setup.intake.drained()
        # Drained: stored, applied and handed to the peers (the sender gets its own back).
        assert setup.store.batches == [1, 4]
        assert await setup.stored() == [update.data for update in updates]
        text = str(setup.room.text("codemirror"))
        assert sorted(text) == sorted("hello")
        async with anyio.create_task_group() as sending:
            sending.start_soon(setup.peer.run)
            await setup.socket.wait_sent(2)  # the greeting, then both batches as one message
            setup.peer.stop()
    assert setup.failures == []
    assert text_of(setup.socket.sent) == text


async def test_a_sender_as_far_ahead_of_the_store_as_the_limit_waits() -> None:
    async with intake_running(limit=2) as setup:
        updates = await setup.checked("abcd")
        setup.store.gate.clear()
        await setup.intake.put(updates[0])
        await setup.store.arrived.wait()
        await setup.intake.put(updates[1])
        await setup.intake.put(updates[2])  # two queued behind the commit: the limit
        put_returned = anyio.Event()

        async def put_fourth() -> None:
            await setup.intake.put(updates[3])
            put_returned.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(put_fourth)
            await wait_all_tasks_blocked()
            assert not put_returned.is_set()  # held back, not queued past the limit
            setup.store.gate.set()
        await setup.intake.drained()
        assert max(setup.store.batches) <= 2
        assert await setup.stored() == [update.data for update in updates]
    assert setup.failures == []


async def test_a_failed_batch_is_reported_once_and_nothing_behind_it_is_stored() -> None:
    down = StoreUnavailable("the database is down")
    async with intake_running(limit=1) as setup:
        updates = await setup.checked("abcd")
        setup.store.gate.clear()
        setup.store.failure = down
        await setup.intake.put(updates[0])
        await setup.store.arrived.wait()
        await setup.intake.put(updates[1])  # queued behind the failing commit: the limit
        put_returned = anyio.Event()

        async def put_third() -> None:
            await setup.intake.put(updates[2])
            put_returned.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(put_third)
            await wait_all_tasks_blocked()
            assert not put_returned.is_set()
            setup.store.gate.set()  # the commit fails: the waiting sender is let go
        await setup.intake.drained()
        assert setup.intake.failed
        assert setup.failures == [down]  # once, for the batch that failed
        setup.store.failure = None  # the store is back: too late for this connection
        await setup.intake.put(updates[3])
        await setup.intake.drained()
        assert setup.store.batches == [1]
        assert await setup.stored() == []
        assert str(setup.room.text("codemirror")) == ""
