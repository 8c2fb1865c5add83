"""`Peer`, one connection's outbound side, on a fake socket: what it sends, in which order and how
merged; frames written straight to an idle socket, and never ahead of what is queued; the bounds
that close a client too far behind with 4504; how `close` and `stop` end it, and what a failed
send does. No server, no event loop but the test's."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from collab_server.protocol import CloseCode, encode_update
from collab_server.protocol.frames import binary_frame
from collab_server.rooms.peer import (
    MERGE_LIMIT,
    Outbound,
    OutboundUpdate,
    Peer,
    PeerDisconnected,
)
from tests.helpers import FakeSocket, keystrokes, text_of

pytestmark = pytest.mark.anyio

SECONDS = 5  # a bound on each test's waits; each takes milliseconds


def outbound(text: str) -> list[OutboundUpdate]:
    """Typing `text`, as the room hands each update to its peers."""
    updates = keystrokes("codemirror", text)
    return [OutboundUpdate.of(update) for update in updates]


class FakeWriter:
    """A socket's ready-made-frame writer: takes frames while `accepting` (a socket that keeps
    up), refuses them otherwise (paused, closing)."""

    def __init__(self) -> None:
        self.accepting = True
        self.written: list[bytes] = []

    def write(self, frame: bytes) -> bool:
        if self.accepting:
            self.written.append(frame)
        return self.accepting


@asynccontextmanager
async def running(peer: Peer) -> AsyncIterator[None]:
    """The peer's sender runs meanwhile; leaving waits for it to end (the block stops it)."""
    with anyio.fail_after(SECONDS):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(peer.run)
            yield


async def run_to_end(peer: Peer) -> None:
    """Run the sender of a peer that is already closed or stopped: it must end by itself."""
    with anyio.fail_after(SECONDS):
        await peer.run()


# -- what is sent -------------------------------------------------------------------------------


async def test_queued_messages_go_in_order_with_each_run_of_updates_merged() -> None:
    socket = FakeSocket()
    peer = socket.peer()
    first, second, third = outbound("abc")
    greeting, between = encode_update(b"\x00\x00"), b"\x01\x00"  # any two other messages
    peer.send(greeting)
    peer.send_update(first)
    peer.send_update(second)
    peer.send(between)
    peer.send_update(third)
    async with running(peer):
        await socket.wait_sent(4)
        peer.stop()
    assert len(socket.sent) == 4
    assert (socket.sent[0], socket.sent[2]) == (greeting, between)
    assert text_of(socket.sent[1:2]) == "ab"  # two updates, one message
    assert socket.sent[3] == third.frame  # a run of one goes as it was encoded
    assert text_of(socket.sent) == "abc"


async def test_a_long_run_of_updates_goes_as_several_merged_messages() -> None:
    socket = FakeSocket()
    peer = socket.peer(queue_limit=1_000)
    typed = "".join(chr(ord("a") + n % 26) for n in range(2 * MERGE_LIMIT + 7))
    for update in outbound(typed):
        peer.send_update(update)
    async with running(peer):
        await socket.wait_sent(3)
        peer.stop()
    assert len(socket.sent) == 3
    assert text_of(socket.sent[:1]) == typed[:MERGE_LIMIT]
    assert text_of(socket.sent[:2]) == typed[: 2 * MERGE_LIMIT]
    assert text_of(socket.sent) == typed


# -- the bounds ---------------------------------------------------------------------------------


# -- frames written straight to the socket --------------------------------------------------------


async def test_an_idle_peer_gets_frames_built_once_written_straight_to_its_socket() -> None:
    socket, writer = FakeSocket(), FakeWriter()
    peer = socket.peer(write_now=writer.write)
    update, *_ = outbound("a")
    presence = Outbound.of(b"\x01\x00")
    peer.send_update(update)
    peer.send(presence)
    peer.send(b"\x00\x00\x01\x00")  # a message for this peer alone: framed here
    assert writer.written == [update.wire, presence.wire, binary_frame(b"\x00\x00\x01\x00")]
    assert update.wire == binary_frame(update.frame)
    async with running(peer):
        peer.stop()
    assert socket.sent == []  # nothing went through the queue


async def test_nothing_is_written_ahead_of_what_is_queued_or_being_sent() -> None:
    socket, writer = FakeSocket(), FakeWriter()
    peer = socket.peer(write_now=writer.write)
    first, second, third = outbound("abc")
    writer.accepting = False  # the client is not reading: its transport is paused
    peer.send_update(first)
    writer.accepting = True
    peer.send_update(second)  # behind a queued update: queued too
    socket.gate.clear()
    async with running(peer):
        await socket.sending.wait()  # the sender holds both, merged, at the socket
        peer.send_update(third)  # the queue is empty, but a send is under way
        socket.gate.set()
        await socket.wait_sent(2)
        peer.stop()
    assert writer.written == []
    assert text_of(socket.sent) == "abc"


async def test_a_closing_peer_writes_nothing() -> None:
    socket, writer = FakeSocket(), FakeWriter()
    peer = socket.peer(write_now=writer.write)
    peer.close(CloseCode.ROOM_DELETED, "room deleted")
    peer.send_update(outbound("a")[0])
    await run_to_end(peer)
    assert writer.written == []
    assert socket.closed == [(CloseCode.ROOM_DELETED, "room deleted")]


async def test_a_peer_over_its_message_bound_is_closed_with_4504_and_its_queue_dropped() -> None:
    socket = FakeSocket()
    peer = socket.peer(queue_limit=3)
    for n in range(3):
        peer.send(bytes([n]))
    assert not peer.closing  # at the bound, not over it
    peer.send(b"\x03")
    assert peer.close_requested and peer.closing
    peer.send(b"\x04")  # after the close: not queued
    await run_to_end(peer)
    assert socket.sent == []
    assert [code for code, _ in socket.closed] == [CloseCode.PEER_TOO_SLOW]


async def test_a_peer_over_its_byte_bound_is_closed_with_4504() -> None:
    socket = FakeSocket()
    peer = socket.peer(queue_bytes_limit=10)
    peer.send(b"x" * 4)
    peer.send(b"y" * 6)
    assert not peer.closing  # ten bytes queued: at the bound
    peer.send(b"z")
    assert peer.close_requested
    await run_to_end(peer)
    assert socket.sent == []
    assert [code for code, _ in socket.closed] == [CloseCode.PEER_TOO_SLOW]


async def test_one_message_over_the_byte_bound_goes_alone_and_sent_bytes_count_no_more() -> None:
    socket = FakeSocket()
    peer = socket.peer(queue_bytes_limit=10)
    async with running(peer):
        peer.send(b"x" * 50)  # a big document's first sync
        assert not peer.closing
        await socket.wait_sent(1)
        peer.send(b"y" * 4)  # what was sent no longer counts against the bound
        peer.send(b"z" * 6)
        assert not peer.closing
        await socket.wait_sent(3)
        peer.stop()
    assert socket.sent == [b"x" * 50, b"y" * 4, b"z" * 6]
    assert socket.closed == []


# -- close and stop -----------------------------------------------------------------------------


async def test_a_close_does_not_wait_for_a_send_under_way_and_keeps_the_first_code() -> None:
    socket = FakeSocket()
    socket.gate.clear()  # a client that stopped reading: the send under way never finishes
    peer = socket.peer()
    for frame in (b"\x01", b"\x02", b"\x03"):
        peer.send(frame)
    async with running(peer):
        await socket.sending.wait()  # the first is being sent
        peer.close(CloseCode.ROOM_DELETED, "room deleted")
        peer.close(CloseCode.PEER_TOO_SLOW, "too late")  # a peer is closed once
        peer.send(b"\x04")
    assert socket.sent == []
    assert socket.closed == [(CloseCode.ROOM_DELETED, "room deleted")]


async def test_a_sender_cancelled_from_outside_mid_send_stays_cancelled() -> None:
    for close_first in (False, True):
        socket = FakeSocket()
        socket.gate.clear()
        peer = socket.peer()
        peer.send(b"\x01")
        sender = asyncio.create_task(peer.run())
        await socket.sending.wait()
        if close_first:  # the close's own interruption does not swallow the outside one
            peer.close(CloseCode.PEER_TOO_SLOW, "too late")
        sender.cancel()
        with anyio.fail_after(SECONDS), pytest.raises(asyncio.CancelledError):
            await sender
        assert socket.sent == [] and socket.closed == []


async def test_stop_ends_the_sender_without_closing_the_socket() -> None:
    socket = FakeSocket()
    peer = socket.peer()
    peer.send(b"\x01")
    peer.stop()  # the client left: there is nobody to send to
    assert peer.closing and not peer.close_requested
    peer.send(b"\x02")
    peer.close(CloseCode.PEER_TOO_SLOW, "too late")  # nothing to close either
    assert not peer.close_requested
    await run_to_end(peer)
    assert (socket.sent, socket.closed) == ([], [])


async def test_a_close_asked_for_before_a_stop_still_closes_with_its_code() -> None:
    socket = FakeSocket()
    peer = socket.peer()
    peer.close(CloseCode.ROOM_DELETED, "room deleted")
    peer.stop()  # the connection's loop ends after the room closed its peers
    assert peer.close_requested
    await run_to_end(peer)
    assert socket.closed == [(CloseCode.ROOM_DELETED, "room deleted")]


# -- failed sends -------------------------------------------------------------------------------


async def test_a_client_gone_mid_send_ends_the_sender_without_a_close() -> None:
    socket = FakeSocket()
    socket.error = PeerDisconnected()
    peer = socket.peer()
    peer.send(b"\x01")
    peer.send(b"\x02")
    await run_to_end(peer)
    assert (socket.sent, socket.closed) == ([], [])
    assert peer.closing and not peer.close_requested


async def test_a_bug_while_sending_closes_that_client_with_1011_and_is_not_raised() -> None:
    socket = FakeSocket()
    socket.error = RuntimeError("a bug of ours")
    peer = socket.peer()
    peer.send(b"\x01")
    await run_to_end(peer)
    assert socket.closed == [(CloseCode.INTERNAL_ERROR, "internal error")]
    assert peer.closing
