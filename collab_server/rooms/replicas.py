"""What the other server processes tell this one's rooms (`ReplicaListener`), applied to the rooms
loaded here: their stored updates and presence, deletions, and reads of what was missed."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from collab_server.protocol import AwarenessEntry
from collab_server.rooms.compaction import Compaction
from collab_server.rooms.jobs import Jobs
from collab_server.rooms.replication import Replication
from collab_server.rooms.room import Room
from persistence import RoomMissing, Store

if TYPE_CHECKING:
    from collab_server.rooms.registry import RoomRegistry

logger = logging.getLogger(__name__)


class ReplicaRooms:
    def __init__(
        self,
        registry: RoomRegistry,
        store: Store,
        replication: Replication,
        jobs: Jobs,
        compaction: Compaction,
    ) -> None:
        self._registry = registry
        self._store = store
        self._replication = replication
        self._jobs = jobs
        self._compaction = compaction

    def updates_from_elsewhere(self, room_id: str, updates: list[bytes]) -> None:
        if (room := self._registry.loaded(room_id)) is not None:
            # A job each, started in order: the room applies them in the order they came.
            self._jobs.start(self._apply(room, updates), f"room {room_id}: update")

    def awareness_from_elsewhere(self, room_id: str, entries: list[AwarenessEntry]) -> None:
        if (room := self._registry.loaded(room_id)) is not None:
            room.apply_remote_awareness(entries)

    def local_awareness(self, room_id: str) -> list[AwarenessEntry]:
        room = self._registry.loaded(room_id)
        return room.local_awareness() if room is not None else []

    def deleted_elsewhere(self, room_id: str) -> None:
        self._jobs.start(self._registry.forget(room_id), f"room {room_id}: deleted elsewhere")

    def updates_missed(self, room_id: str) -> None:
        """The room reads what it missed from the store; `caught_up` tells how far it got."""
        room = self._registry.loaded(room_id)
        if room is None or not self._jobs.running:
            self._replication.caught_up(room_id, None)
            return
        self._jobs.start(self._read_missed(room), f"room {room_id}: reading missed")

    async def last_seqs(self, room_ids: list[str]) -> dict[str, int]:
        return await self._store.last_seqs(room_ids)

    async def _apply(self, room: Room, updates: list[bytes]) -> None:
        await room.apply_remote_updates(updates)
        self._compaction.after_append(room)

    async def _read_missed(self, room: Room) -> None:
        through = None
        try:
            log = await self._store.load(room.id)
            await room.read_missed(log)
            through = log.last_seq
        except RoomMissing:
            # Deleted by another process while this one could not hear it say so.
            logger.info("room %s was deleted elsewhere", room.id)
            await self._registry.forget(room.id, only=room)
        finally:
            # Not for a newer copy loaded meanwhile.
            if self._registry.loaded(room.id) in (room, None):
                self._replication.caught_up(room.id, through)
