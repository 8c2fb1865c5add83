"""Rooms shared with other server processes through Redis (`rooms.replication` over `RedisBus`).

Turns what the rooms tell the others into bus messages and bus messages back into calls on the
registry. A room is subscribed before it is read from the store, so nothing published meanwhile
is missed; what arrives before the room is in memory is held until it is.
"""

from __future__ import annotations

import logging
from functools import partial
from types import TracebackType

from pycrdt import merge_updates

from collab_server.cluster.bus import RedisBus
from collab_server.cluster.messages import BusMessage, Kind
from collab_server.protocol import (
    AwarenessEntry,
    ProtocolError,
    decode_awareness,
    encode_awareness,
)
from collab_server.rooms.replication import ReplicaListener

logger = logging.getLogger(__name__)


class ClusterReplication:
    def __init__(self, redis_url: str) -> None:
        self._bus = RedisBus(redis_url, on_reconnect=self._reconnected)
        self._listener: ReplicaListener | None = None
        self._held: dict[str, list[BusMessage]] = {}  # for rooms still loading

    async def __aenter__(self) -> ClusterReplication:
        await self._bus.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._bus.__aexit__(exc_type, exc, traceback)

    def listen(self, listener: ReplicaListener) -> None:
        self._listener = listener

    async def follow(self, room_id: str) -> None:
        self._held[room_id] = []
        await self._bus.subscribe(room_id, partial(self._received, room_id))

    def loaded(self, room_id: str) -> None:
        for message in self._held.pop(room_id, []):
            self._dispatch(room_id, message)
        self._bus.publish(room_id, Kind.QUERY_AWARENESS)

    async def unfollow(self, room_id: str) -> None:
        self._held.pop(room_id, None)
        await self._bus.unsubscribe(room_id)

    def updates_stored(self, room_id: str, updates: list[bytes]) -> None:
        update = updates[0] if len(updates) == 1 else merge_updates(*updates)
        self._bus.publish(room_id, Kind.UPDATE, update)

    def awareness_changed(self, room_id: str, entries: list[AwarenessEntry]) -> None:
        self._bus.publish(room_id, Kind.AWARENESS, encode_awareness(entries))

    def room_deleted(self, room_id: str) -> None:
        self._bus.publish(room_id, Kind.DELETED)

    def _reconnected(self) -> None:
        if self._listener is not None:
            self._listener.updates_missed(None)

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
        if message.kind is Kind.UPDATE:
            listener.updates_from_elsewhere(room_id, [message.payload])
        elif message.kind is Kind.AWARENESS:
            try:
                listener.awareness_from_elsewhere(room_id, decode_awareness(message.payload))
            except ProtocolError as error:
                logger.warning("room %s: bad awareness from another process: %s", room_id, error)
        elif message.kind is Kind.QUERY_AWARENESS:
            if entries := listener.local_awareness(room_id):
                self.awareness_changed(room_id, entries)
        elif message.kind is Kind.DELETED:
            listener.deleted_elsewhere(room_id)
        elif message.kind is Kind.RESYNC:
            listener.updates_missed(room_id)
