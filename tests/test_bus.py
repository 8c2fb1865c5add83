"""`RedisBus` on its own against the machine's Redis: messages cross between two buses in order
and never come back to their sender; an unsubscribed room hears nothing; bytes no server wrote
and a failing handler do not stop the reader; messages the outbox cannot hold, or cannot publish,
become one RESYNC; a subscriber cut off from Redis resubscribes and says so (`on_reconnect`).

Each test uses rooms of its own (fresh names, so channels nobody else uses) and clears nothing.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from redis.asyncio import Redis

from collab_server.cluster import bus as bus_module
from collab_server.cluster.bus import CHANNEL_PREFIX, RedisBus
from collab_server.cluster.messages import NODE_ID_BYTES, BusMessage, MessageKind
from tests.polling import poll
from tests.postgres import TcpProxy

pytestmark = pytest.mark.anyio

REDIS_PORT = 6379
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
SECONDS = 10  # a bound on each wait; a reconnection takes well under a second


def fresh_room() -> str:
    return f"bus-test-{secrets.token_hex(6)}"


class Inbox:
    """A room's handler on a bus: what it was delivered, to wait on."""

    def __init__(self, fail_on: MessageKind | None = None) -> None:
        self.messages: list[BusMessage] = []
        self._fail_on = fail_on
        self._changed = asyncio.Event()

    def __call__(self, message: BusMessage) -> None:
        self.messages.append(message)
        self._changed.set()
        if message.kind == self._fail_on:
            raise RuntimeError("a handler's bug")

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(SECONDS):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()


def no_reconnect() -> None:
    raise AssertionError("this bus never lost its connection")


@asynccontextmanager
async def raw_redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


async def test_messages_cross_in_order_and_never_come_back_to_their_sender() -> None:
    room = fresh_room()
    at_a, at_b = Inbox(), Inbox()
    async with (
        RedisBus(REDIS_URL, on_reconnect=no_reconnect) as a,
        RedisBus(REDIS_URL, on_reconnect=no_reconnect) as b,
    ):
        assert a.node != b.node
        await a.subscribe(room, at_a)
        await b.subscribe(room, at_b)
        a.publish(room, MessageKind.UPDATE, b"from a")
        await at_b.wait_for(1)  # Redis has handed it to every subscriber, `a` included
        b.publish(room, MessageKind.UPDATE, b"one")
        b.publish(room, MessageKind.AWARENESS, b"two")
        await at_a.wait_for(2)
    assert at_b.messages == [BusMessage(a.node, MessageKind.UPDATE, b"from a")]
    assert at_a.messages == [
        BusMessage(b.node, MessageKind.UPDATE, b"one"),
        BusMessage(b.node, MessageKind.AWARENESS, b"two"),
    ]


async def test_an_unsubscribed_room_hears_nothing_more() -> None:
    gone, kept = fresh_room(), fresh_room()
    at_gone, at_kept = Inbox(), Inbox()
    other = BusMessage(b"o" * NODE_ID_BYTES, MessageKind.UPDATE, b"x").encode()
    async with RedisBus(REDIS_URL, on_reconnect=no_reconnect) as bus, raw_redis() as redis:
        await bus.subscribe(gone, at_gone)
        await bus.subscribe(kept, at_kept)
        await bus.unsubscribe(gone)
        # One connection publishes both: the first is delivered (or not) before the second.
        await redis.publish(CHANNEL_PREFIX + gone, other)
        await redis.publish(CHANNEL_PREFIX + kept, other)
        await at_kept.wait_for(1)
    assert at_gone.messages == []


async def test_foreign_bytes_and_a_failing_handler_do_not_stop_the_reader() -> None:
    room = fresh_room()
    inbox = Inbox(fail_on=MessageKind.AWARENESS)
    node = b"n" * NODE_ID_BYTES
    channel = CHANNEL_PREFIX + room
    async with RedisBus(REDIS_URL, on_reconnect=no_reconnect) as bus, raw_redis() as redis:
        await bus.subscribe(room, inbox)
        await redis.publish(channel, b"short")  # no node id
        await redis.publish(channel, node + b"\x63payload")  # a kind no server sends
        await redis.publish(channel, BusMessage(node, MessageKind.AWARENESS, b"boom").encode())
        await redis.publish(channel, BusMessage(node, MessageKind.UPDATE, b"after").encode())
        await inbox.wait_for(2)
    assert inbox.messages == [
        BusMessage(node, MessageKind.AWARENESS, b"boom"),
        BusMessage(node, MessageKind.UPDATE, b"after"),
    ]


async def test_messages_past_the_outbox_bound_become_one_resync(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bus_module, "OUTBOX_LIMIT", 2)
    room = fresh_room()
    inbox = Inbox()
    async with (
        RedisBus(REDIS_URL, on_reconnect=no_reconnect) as sender,
        RedisBus(REDIS_URL, on_reconnect=no_reconnect) as receiver,
    ):
        await receiver.subscribe(room, inbox)
        for number in range(5):  # all before the publisher runs: three do not fit
            sender.publish(room, MessageKind.UPDATE, b"%d" % number)
        await inbox.wait_for(3)
        sender.publish(room, MessageKind.UPDATE, b"later")  # the RESYNC was sent: not again
        await inbox.wait_for(4)
    assert inbox.messages == [
        BusMessage(sender.node, MessageKind.RESYNC),  # "read the store": what was dropped is there
        BusMessage(sender.node, MessageKind.UPDATE, b"0"),
        BusMessage(sender.node, MessageKind.UPDATE, b"1"),
        BusMessage(sender.node, MessageKind.UPDATE, b"later"),
    ]


async def test_a_bus_cut_off_from_redis_resyncs_its_rooms_and_resubscribes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    room = fresh_room()
    at_cut, at_direct = Inbox(), Inbox()
    reconnects: list[None] = []
    async with TcpProxy(REDIS_PORT) as proxy:
        async with (
            RedisBus(REDIS_URL, on_reconnect=no_reconnect) as direct,
            RedisBus(
                f"redis://127.0.0.1:{proxy.port}/0", on_reconnect=lambda: reconnects.append(None)
            ) as cut,
        ):
            await cut.subscribe(room, at_cut)
            await direct.subscribe(room, at_direct)
            assert reconnects == []  # the first connection is no reconnection
            proxy.cut()
            cut.publish(room, MessageKind.UPDATE, b"lost")
            await poll(lambda: "publishing 1 messages failed" in caplog.text, SECONDS)
            proxy.restore()
            # The publisher tells the others to read the store instead of what it could not send.
            await at_direct.wait_for(1)
            assert at_direct.messages == [BusMessage(cut.node, MessageKind.RESYNC)]
            # The reader is back, subscribed to its rooms again, and said so.
            await poll(lambda: reconnects, SECONDS)
            direct.publish(room, MessageKind.UPDATE, b"after")
            await at_cut.wait_for(1)
    assert at_cut.messages == [BusMessage(direct.node, MessageKind.UPDATE, b"after")]
    assert len(reconnects) == 1
