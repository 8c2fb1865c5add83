"""Rooms shared with other server processes through Redis (`rooms.replication` over `RedisBus`).

Turns what the rooms tell the others into bus messages and bus messages back into calls on the
registry. A room is subscribed before it is read from the store, so nothing published meanwhile
is missed; what arrives before the room is in memory is held until it is.

Updates travel with the sequence numbers the store gave them, and each room applies those of
other processes in that order (`RoomFeed`). The room reads what it missed from the store (a
catch-up, answered by `caught_up`) when a number stays missing for `HOLE_WAIT_SECONDS`, when the
store has given out a number that never arrived (every `check_seconds`, one query asks the store
for the newest number of each loaded room: this bounds the window when a process died between
storing and publishing), and when the bus says messages were lost (a reconnect, a RESYNC).
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from types import TracebackType

from collab_server.cluster.bus import RedisBus
from collab_server.cluster.feed import RoomFeed
from collab_server.cluster.messages import (
    BadBusMessage,
    BusMessage,
    MessageKind,
    StoredUpdate,
    decode_stored_update,
)
from collab_server.protocol import (
    AwarenessEntry,
    ProtocolError,
    decode_awareness,
    encode_awareness,
)
from collab_server.rooms.replication import ReplicaListener
from persistence import BUFFERED, StoreError

logger = logging.getLogger(__name__)

# How long an update may be on its way after one numbered higher arrived (two processes that
# published at once), before the room reads the store for it.
HOLE_WAIT_SECONDS = 0.5


class ClusterReplication:
    def __init__(self, redis_url: str) -> None:
        self._bus = RedisBus(redis_url, on_reconnect=self._reconnected)
        self._listener: ReplicaListener | None = None
        self._held: dict[str, list[BusMessage]] = {}  # for rooms still loading
        self._feeds: dict[str, RoomFeed] = {}
        self._hole_timers: dict[str, asyncio.TimerHandle] = {}
        self._checker: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ClusterReplication:
        await self._bus.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for timer in self._hole_timers.values():
            timer.cancel()
        self._hole_timers.clear()
        if self._checker is not None:
            self._checker.cancel()
            # It only ends by cancellation; anything else it raised is a bug to report.
            (outcome,) = await asyncio.gather(self._checker, return_exceptions=True)
            if not isinstance(outcome, asyncio.CancelledError):
                logger.error("the cluster's store check ended with %r", outcome)
        await self._bus.__aexit__(exc_type, exc, traceback)

    def listen(self, listener: ReplicaListener, *, check_seconds: float) -> None:
        self._listener = listener
        self._checker = asyncio.create_task(
            self._check_store(check_seconds), name="cluster store check"
        )

    async def follow(self, room_id: str) -> None:
        self._held[room_id] = []
        await self._bus.subscribe(room_id, partial(self._received, room_id))
        # Asked once subscribed: whatever the store numbers after this answer is heard on the
        # bus (or found missing), and the read that loads the room brings all the rest.
        newest = await self._last_seqs([room_id])
        self._feeds[room_id] = RoomFeed(newest.get(room_id, 0))

    def loaded(self, room_id: str) -> None:
        for message in self._held.pop(room_id, []):
            self._dispatch(room_id, message)
        self._watch(room_id)
        self._bus.publish(room_id, MessageKind.QUERY_AWARENESS)

    async def unfollow(self, room_id: str) -> None:
        self._held.pop(room_id, None)
        self._feeds.pop(room_id, None)
        self._stop_watching(room_id)
        await self._bus.unsubscribe(room_id)

    def updates_stored(self, room_id: str, merged: bytes, seqs: list[int]) -> None:
        numbers = tuple(seq for seq in seqs if seq != BUFFERED)
        if (feed := self._feeds.get(room_id)) is not None:
            feed.applied(numbers)
            self._deliver(room_id, feed.release())  # updates that waited for these
        self._bus.publish(room_id, MessageKind.STORED, StoredUpdate(numbers, merged).encode())

    def caught_up(self, room_id: str, through: int | None) -> None:
        feed = self._feeds.get(room_id)
        if feed is None or not feed.catching_up:
            return  # an answer for a room unloaded since (this feed asked nothing)
        self._deliver(room_id, feed.caught_up(through))
        if feed.read_again:
            feed.read_again = False
            self._catch_up(room_id)
        elif through is not None:
            # After a failed read (the store out of reach), the next look at the store tries
            # again, not the hole's timer every HOLE_WAIT_SECONDS.
            self._watch(room_id)

    def awareness_changed(self, room_id: str, entries: list[AwarenessEntry]) -> None:
        self._bus.publish(room_id, MessageKind.AWARENESS, encode_awareness(entries))

    def room_deleted(self, room_id: str) -> None:
        self._bus.publish(room_id, MessageKind.DELETED)

    # -- catching up ----------------------------------------------------------------------------

    def _reconnected(self) -> None:
        for room_id in self._feeds.keys() | self._held.keys():
            self._catch_up(room_id)

    def _catch_up(self, room_id: str) -> None:
        if (held := self._held.get(room_id)) is not None:
            held.append(BusMessage(self._bus.node, MessageKind.RESYNC))  # once it is in memory
            return
        feed = self._feeds.get(room_id)
        if feed is None or self._listener is None:
            return
        if feed.catching_up:
            feed.read_again = True  # the read under way may have begun before what was lost
            return
        feed.catching_up = True
        self._stop_watching(room_id)
        self._listener.updates_missed(room_id)

    def _watch(self, room_id: str) -> None:
        """If the room lacks a stored update, give it a while to arrive, then read the store."""
        feed = self._feeds.get(room_id)
        if feed is None or feed.catching_up or room_id in self._hole_timers:
            return
        if (missing := feed.missing) is not None:
            self._hole_timers[room_id] = asyncio.get_running_loop().call_later(
                HOLE_WAIT_SECONDS, self._hole_lasted, room_id, missing
            )

    def _stop_watching(self, room_id: str) -> None:
        if (timer := self._hole_timers.pop(room_id, None)) is not None:
            timer.cancel()

    def _hole_lasted(self, room_id: str, missing: int) -> None:
        del self._hole_timers[room_id]
        feed = self._feeds.get(room_id)
        if feed is None:
            return
        if feed.through < missing:
            logger.info(
                "room %s: stored update %d never came over Redis (%d waiting); reading the store",
                room_id,
                missing,
                feed.held,
            )
            self._catch_up(room_id)
        else:
            self._watch(room_id)  # that one came; a later one may be missing now

    async def _check_store(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            rooms = [room_id for room_id in self._feeds if room_id not in self._held]
            if not rooms:
                continue
            try:
                newest = await self._last_seqs(rooms)
            except StoreError as error:
                logger.info("could not compare %d rooms with the store: %s", len(rooms), error)
                continue
            for room_id in rooms:
                if (feed := self._feeds.get(room_id)) is None:
                    continue  # unloaded meanwhile
                if room_id not in newest:
                    self._catch_up(room_id)  # deleted: reading it finds out
                    continue
                feed.stored(newest[room_id])
                self._watch(room_id)

    async def _last_seqs(self, room_ids: list[str]) -> dict[str, int]:
        if self._listener is None:
            raise RuntimeError("follow() before listen()")
        return await self._listener.last_seqs(room_ids)

    # -- receiving ------------------------------------------------------------------------------

    def _received(self, room_id: str, message: BusMessage) -> None:
        held = self._held.get(room_id)
        if held is not None:
            held.append(message)
        else:
            self._dispatch(room_id, message)

    def _dispatch(self, room_id: str, message: BusMessage) -> None:
        listener = self._listener
        if listener is None:
            return
        if message.kind is MessageKind.STORED:
            try:
                stored = decode_stored_update(message.payload)
            except BadBusMessage as error:
                logger.warning("room %s: bad update from another process: %s", room_id, error)
                return
            self._offer(room_id, stored.seqs, stored.update)
        elif message.kind is MessageKind.UPDATE:
            self._offer(room_id, (), message.payload)
        elif message.kind is MessageKind.AWARENESS:
            try:
                listener.awareness_from_elsewhere(room_id, decode_awareness(message.payload))
            except ProtocolError as error:
                logger.warning("room %s: bad awareness from another process: %s", room_id, error)
        elif message.kind is MessageKind.QUERY_AWARENESS:
            if entries := listener.local_awareness(room_id):
                self.awareness_changed(room_id, entries)
        elif message.kind is MessageKind.DELETED:
            listener.deleted_elsewhere(room_id)
        elif message.kind is MessageKind.RESYNC:
            self._catch_up(room_id)

    def _offer(self, room_id: str, seqs: tuple[int, ...], update: bytes) -> None:
        if (feed := self._feeds.get(room_id)) is not None:
            self._deliver(room_id, feed.offer(seqs, update))
            self._watch(room_id)

    def _deliver(self, room_id: str, updates: list[bytes]) -> None:
        if updates and self._listener is not None:
            self._listener.updates_from_elsewhere(room_id, updates)
