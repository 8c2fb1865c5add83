"""`Connection`, one client's way into its room, in process on a `MemoryStore`: an editor's
updates are checked, stored and applied; a viewer's are dropped unread; an update the limits or
yrs refuse never reaches the store; anything else the room answers. No server, no socket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from collab_server.protocol import ProtocolError, SyncStep1, SyncStep2, SyncUpdate, decode_message
from collab_server.protocol.update import UpdateLimits
from collab_server.rooms.connection import Connection
from collab_server.rooms.room import Room
from collab_server.rooms.snapshot import load_stored
from persistence.memory import MemoryStore
from tests.helpers import FakeSocket, keystrokes, text_of

pytestmark = pytest.mark.anyio

SECONDS = 5  # a bound on each test's waits; each takes milliseconds
ROOM = "r"
LIMITS = UpdateLimits()


async def empty_room() -> tuple[Room, MemoryStore]:
    store = MemoryStore()
    await store.ensure_room(ROOM)
    return Room(ROOM, load_stored([], LIMITS), store, limits=LIMITS), store


@asynccontextmanager
async def connected(room: Room, *, writable: bool) -> AsyncIterator[tuple[Connection, FakeSocket]]:
    """A client in `room`, its updates stored while it is connected and drained at the end."""
    socket = FakeSocket()
    peer = socket.peer(ROOM)
    failures: list[Exception] = []
    connection = Connection(room, peer, writable=writable, on_failure=failures.append)
    room.join(peer)
    with anyio.fail_after(SECONDS):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(connection.store_updates)
            yield connection, socket
            await connection.drained()
            tasks.cancel_scope.cancel()
    room.leave(peer)
    assert failures == []


async def test_an_editors_updates_are_stored_and_applied() -> None:
    room, store = await empty_room()
    async with connected(room, writable=True) as (connection, _):
        for update in keystrokes("codemirror", "hi"):
            await connection.receive(SyncUpdate(update))
    assert len((await store.load(ROOM)).updates) == 2
    assert str(room.text("codemirror")) == "hi"


async def test_a_viewers_updates_are_dropped_unread() -> None:
    room, store = await empty_room()
    async with connected(room, writable=False) as (connection, _):
        await connection.receive(SyncUpdate(keystrokes("codemirror", "x")[0]))
        await connection.receive(SyncUpdate(b"not an update at all"))  # not even decoded
    assert (await store.load(ROOM)).updates == []
    assert str(room.text("codemirror")) == ""


async def test_an_update_that_does_not_decode_is_refused_and_not_stored() -> None:
    room, store = await empty_room()
    async with connected(room, writable=True) as (connection, _):
        with pytest.raises(ProtocolError) as refused:
            await connection.receive(SyncUpdate(b"\x01\x01\xff"))
    assert refused.value.code == 4422
    assert (await store.load(ROOM)).updates == []


async def test_other_messages_are_answered_by_the_room_a_viewers_too() -> None:
    room, _ = await empty_room()
    async with connected(room, writable=True) as (editor, _):
        await editor.receive(SyncUpdate(keystrokes("codemirror", "x")[0]))
    async with connected(room, writable=False) as (viewer, socket):
        await viewer.receive(SyncStep1(b"\x00"))
        async with anyio.create_task_group() as sending:
            sending.start_soon(viewer.peer.run)
            await socket.wait_sent(2)  # the greeting's sync step 1, then the answer
            viewer.peer.stop()
    answer = decode_message(socket.sent[-1])
    assert isinstance(answer, SyncStep2)
    assert text_of([socket.sent[-1]]) == "x"
