"""Cross-process fan-out over Redis pub/sub: one channel per room, the database stays the truth.

Every server process subscribes to the channels of the rooms it has loaded. An update is published
only after it is durable in the shared store, so a process that missed messages (its Redis
connection dropped, or a publisher could not reach Redis) catches up by reading the store: the bus
tells its owner when that is needed (`on_reconnect`, and RESYNC messages from publishers).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from collab_server.cluster.messages import (
    NODE_ID_BYTES,
    BadBusMessage,
    BusMessage,
    MessageKind,
    decode_bus_message,
)

logger = logging.getLogger(__name__)

CHANNEL_PREFIX = "collab:room:"
CONTROL_CHANNEL = "collab:nodes"  # always subscribed, so the connection is never idle-empty
SUBSCRIBE_WAIT_SECONDS = 2.0
RECONNECT_BACKOFF = (0.05, 2.0)  # first and longest wait between attempts
OUTBOX_LIMIT = 10_000  # messages; past it, rooms are marked for RESYNC instead
# A dead peer without a TCP reset is noticed after about 10 + 3 * 5 seconds.
KEEPALIVE = {socket.TCP_KEEPIDLE: 10, socket.TCP_KEEPINTVL: 5, socket.TCP_KEEPCNT: 3}

BusHandler = Callable[[BusMessage], None]


def _channel(room_id: str) -> str:
    return CHANNEL_PREFIX + room_id


class RedisBus:
    def __init__(self, url: str, *, on_reconnect: Callable[[], None]) -> None:
        self.node = os.urandom(NODE_ID_BYTES)
        self._url = url
        # Called when the subscriber connection came back: messages may have been missed.
        self._on_reconnect = on_reconnect
        self._handlers: dict[str, BusHandler] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._pubsub: PubSub | None = None
        self._outbox: list[tuple[str, bytes]] = []
        self._outbox_ready = asyncio.Event()
        self._resync_rooms: set[str] = set()  # rooms whose messages could not be published
        self._late: set[str] = set()  # rooms whose subscription was not confirmed in time
        self._loops: list[asyncio.Task[None]] = []

    def _client(self) -> Redis:
        # No hidden retries: a lost connection must surface here, so the rooms catch up.
        return Redis.from_url(
            self._url,
            retry=Retry(NoBackoff(), 0),
            socket_keepalive=True,
            socket_keepalive_options=KEEPALIVE,
            socket_connect_timeout=5,
        )

    async def __aenter__(self) -> RedisBus:
        subscribed = asyncio.Event()
        self._loops = [
            asyncio.create_task(self._read(subscribed), name="bus reader"),
            asyncio.create_task(self._publish_loop(), name="bus publisher"),
        ]
        try:
            async with asyncio.timeout(SUBSCRIBE_WAIT_SECONDS):
                await subscribed.wait()
        except TimeoutError:
            logger.warning("Redis at %s not reachable yet; rooms will catch up", self._url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        loops, self._loops = self._loops, []
        for loop in loops:
            loop.cancel()
        # The loops only end by cancellation; anything else they raised is a bug to report.
        for outcome in await asyncio.gather(*loops, return_exceptions=True):
            if not isinstance(outcome, asyncio.CancelledError):
                logger.error("Redis bus loop ended with %r", outcome)

    # -- subscriptions ------------------------------------------------------------------------

    async def subscribe(self, room_id: str, handler: BusHandler) -> None:
        """Deliver the room's messages to `handler`; returns once Redis confirmed (or gave up)."""
        self._handlers[room_id] = handler
        confirmed = self._confirmed.setdefault(room_id, asyncio.Event())
        pubsub = self._pubsub
        if pubsub is None:
            # Not connected: the reader subscribes every room when it connects, then has all
            # loaded rooms catch up (`on_reconnect`).
            return
        try:
            await pubsub.subscribe(_channel(room_id))
            async with asyncio.timeout(SUBSCRIBE_WAIT_SECONDS):
                await confirmed.wait()
        except (RedisError, OSError, TimeoutError) as error:
            # Messages published until the subscription works are missed: once it does (or the
            # connection comes back), the room catches up from the store.
            logger.warning("room %s: subscribing failed (%s); it will catch up", room_id, error)
            self._late.add(room_id)

    async def unsubscribe(self, room_id: str) -> None:
        self._handlers.pop(room_id, None)
        self._confirmed.pop(room_id, None)
        self._late.discard(room_id)
        if self._pubsub is not None:
            try:
                await self._pubsub.unsubscribe(_channel(room_id))
            except (RedisError, OSError) as error:
                logger.info("room %s: unsubscribing failed: %s", room_id, error)

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, room_id: str, kind: MessageKind, payload: bytes = b"") -> None:
        """Queue a message for the other processes; never blocks."""
        if len(self._outbox) >= OUTBOX_LIMIT:
            self._resync_rooms.add(room_id)
            return
        self._outbox.append((room_id, BusMessage(self.node, kind, payload).encode()))
        self._outbox_ready.set()

    async def _publish_loop(self) -> None:
        client = self._client()
        delay = RECONNECT_BACKOFF[0]
        try:
            while True:
                await self._outbox_ready.wait()
                self._outbox_ready.clear()
                batch, self._outbox = self._outbox, []
                resync = sorted(self._resync_rooms)
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        for room_id in resync:
                            resync_message = BusMessage(self.node, MessageKind.RESYNC).encode()
                            pipe.publish(_channel(room_id), resync_message)
                        for room_id, data in batch:
                            pipe.publish(_channel(room_id), data)
                        await pipe.execute()
                except (RedisError, OSError) as error:
                    # The updates are in the store: the other processes catch up from there.
                    self._resync_rooms.update(room_id for room_id, _ in batch)
                    logger.warning("publishing %d messages failed: %s", len(batch), error)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RECONNECT_BACKOFF[1])
                    self._outbox_ready.set()
                    continue
                self._resync_rooms.difference_update(resync)
                delay = RECONNECT_BACKOFF[0]
        finally:
            await client.aclose()

    # -- receiving ----------------------------------------------------------------------------

    async def _read(self, subscribed: asyncio.Event) -> None:
        delay = RECONNECT_BACKOFF[0]
        connected_before = False
        while True:
            client = self._client()
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(CONTROL_CHANNEL, *map(_channel, self._handlers))
                self._pubsub = pubsub
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        self._dispatch(message, subscribed)
                        if connected_before and message["channel"] == CONTROL_CHANNEL.encode():
                            connected_before = False
                            logger.info("Redis bus connected again; rooms catch up")
                            self._on_reconnect()
                        delay = RECONNECT_BACKOFF[0]
            except (RedisError, OSError) as error:
                logger.warning("Redis bus connection lost: %s", error)
                connected_before = True
            finally:
                self._pubsub = None
                for event in self._confirmed.values():
                    event.clear()
                await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
                await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_BACKOFF[1])

    def _confirm(self, room_id: str) -> None:
        event = self._confirmed.get(room_id)
        if event is not None:
            event.set()
        handler = self._handlers.get(room_id)
        if room_id in self._late and handler is not None:
            self._late.discard(room_id)
            handler(BusMessage(self.node, MessageKind.RESYNC))

    def _dispatch(self, message: dict[str, Any], subscribed: asyncio.Event) -> None:
        channel = message["channel"].decode()
        if message["type"] == "subscribe":
            if channel == CONTROL_CHANNEL:
                subscribed.set()
            else:
                self._confirm(channel.removeprefix(CHANNEL_PREFIX))
            return
        if message["type"] != "message" or not channel.startswith(CHANNEL_PREFIX):
            return
        handler = self._handlers.get(channel.removeprefix(CHANNEL_PREFIX))
        if handler is None:
            return
        try:
            bus_message = decode_bus_message(message["data"])
        except BadBusMessage as error:
            logger.warning("channel %s: %s", channel, error)
            return
        if bus_message.node == self.node:
            return
        try:
            handler(bus_message)
        except Exception:
            logger.exception("channel %s: handling a %s message failed", channel, bus_message.kind)
