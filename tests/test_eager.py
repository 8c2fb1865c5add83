"""`start_eagerly`, and a room's batches run through it: a batch the store takes at once is
stored, applied and relayed without a task or a turn of the event loop; one that waits on the
store goes on in a task, which its caller's cancellation does not stop, and the room's later
batches start in a task. No server, no socket."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from collab_server.protocol.update import UpdateLimits
from collab_server.rooms.eager import start_eagerly
from collab_server.rooms.room import Room
from collab_server.rooms.snapshot import load_stored
from persistence.memory import MemoryStore
from tests.helpers import FakeSocket, keystrokes
from tests.polling import poll

pytestmark = pytest.mark.anyio

SECONDS = 5  # a bound on each test's waits; each takes milliseconds
ROOM = "r"
LIMITS = UpdateLimits()


# -- the helper ---------------------------------------------------------------------------------


async def test_a_coroutine_that_never_suspends_runs_to_its_end_at_once() -> None:
    steps: list[str] = []

    async def work() -> None:
        steps.append("ran")

    assert start_eagerly(work()) is None
    assert steps == ["ran"]


async def test_what_a_coroutine_raises_before_it_suspends_is_raised_at_once() -> None:
    async def work() -> None:
        raise KeyError("at once")

    with pytest.raises(KeyError, match="at once"):
        start_eagerly(work())


async def test_a_coroutine_that_suspends_is_carried_on_by_a_task_from_where_it_stopped() -> None:
    answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    steps: list[object] = []

    async def work() -> None:
        steps.append("before")
        steps.append(await answer)
        await asyncio.sleep(0)  # a bare yield to the loop, as well as a future
        steps.append("after")

    task = start_eagerly(work())
    assert task is not None
    assert steps == ["before"]
    answer.set_result(42)
    with anyio.fail_after(SECONDS):
        await task
    assert steps == ["before", 42, "after"]


async def test_what_a_carried_on_coroutine_awaits_raises_is_raised_in_it_where_it_waits() -> None:
    failing: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    caught: list[BaseException] = []

    async def work() -> None:
        try:
            await failing
        except ValueError as error:
            caught.append(error)
            raise RuntimeError("after the failure") from error

    task = start_eagerly(work())
    assert task is not None
    failing.set_exception(ValueError("the store failed"))
    with anyio.fail_after(SECONDS), pytest.raises(RuntimeError, match="after the failure"):
        await task
    assert [str(error) for error in caught] == ["the store failed"]


async def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned_up: list[bool] = []

    async def work() -> None:
        try:
            await never
        finally:
            cleaned_up.append(True)

    task = start_eagerly(work())
    assert task is not None
    await asyncio.sleep(0)  # the task has taken over
    task.cancel()
    with anyio.fail_after(SECONDS), pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert never.cancelled()  # as a task cancels what it awaits
    assert cleaned_up == [True]


async def test_a_cancellation_while_it_yields_to_the_loop_is_thrown_into_the_coroutine() -> None:
    turns = 0

    async def work() -> None:
        nonlocal turns
        for _ in range(1000):  # no future to cancel: only a thrown CancelledError stops it
            await asyncio.sleep(0)
            turns += 1

    task = start_eagerly(work())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with anyio.fail_after(SECONDS), pytest.raises(asyncio.CancelledError):
        await task
    assert turns <= 2


# -- a room's batches -----------------------------------------------------------------------------


class HeldStore(MemoryStore):
    """A memory store whose appends wait while `gate` is clear."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()  # an append has reached the gate

    async def append_many(self, room_id: str, updates: list[bytes]) -> list[int]:
        self.arrived.set()
        await self.gate.wait()
        return await super().append_many(room_id, updates)


async def room_on(store: MemoryStore) -> Room:
    await store.ensure_room(ROOM)
    return Room(ROOM, load_stored([], LIMITS), store, limits=LIMITS)


async def test_a_batch_the_store_takes_at_once_is_relayed_without_a_turn_of_the_loop() -> None:
    store = MemoryStore()
    room = await room_on(store)
    written: list[bytes] = []

    def write_now(frame: bytes) -> bool:
        written.append(frame)
        return True

    peer = FakeSocket().peer(ROOM, write_now=write_now)
    room.join(peer)
    greeted = len(written)
    update = await room.check(keystrokes("codemirror", "a")[0])
    storing = room.store_updates([update], origin=peer)
    with pytest.raises(StopIteration):
        storing.send(None)  # it ran to its end: it never gave the event loop a turn
    assert str(room.text("codemirror")) == "a"
    assert (await store.load(ROOM)).updates == [update.data]
    assert len(written) == greeted + 1  # the sender gets its update back


async def test_what_is_stored_is_applied_even_if_its_sender_is_cancelled_meanwhile() -> None:
    store = HeldStore()
    room = await room_on(store)
    update = await room.check(keystrokes("codemirror", "a")[0])
    store.gate.clear()
    sender = asyncio.create_task(room.store_updates([update], origin=None))
    with anyio.fail_after(SECONDS):
        await store.arrived.wait()
    sender.cancel()
    with pytest.raises(asyncio.CancelledError):
        await sender
    store.gate.set()
    await poll(lambda: str(room.text("codemirror")) == "a", SECONDS)
    assert (await store.load(ROOM)).updates == [update.data]


async def test_once_a_batch_had_to_wait_for_the_store_the_next_ones_start_in_a_task() -> None:
    store = HeldStore()
    room = await room_on(store)
    first, second = [await room.check(update) for update in keystrokes("codemirror", "ab")]
    store.gate.clear()
    waiting = asyncio.create_task(room.store_updates([first], origin=None))
    with anyio.fail_after(SECONDS):
        await store.arrived.wait()
        store.gate.set()
        await waiting
    storing = room.store_updates([second], origin=None)
    storing.send(None)  # no StopIteration: it waits for the task that the store answers at once
    storing.close()  # its caller gone, the task stores and applies it all the same
    await poll(lambda: str(room.text("codemirror")) == "ab", SECONDS)
