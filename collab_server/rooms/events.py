"""What the rooms do, passed on (`RoomListener`): to the metrics, the compaction, the automatic
versions, who wrote what, the store's copy of each room's language, the other server processes,
and the registry when a room must leave memory."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from collab_server.metrics import Metrics
from collab_server.protocol import AwarenessEntry
from collab_server.protocol.update import UpdateRefused
from collab_server.rooms.compaction import Compaction
from collab_server.rooms.history import Checkpoints
from collab_server.rooms.jobs import Jobs
from collab_server.rooms.replication import Replication
from collab_server.rooms.room import Room, RoomListener
from persistence import Store

if TYPE_CHECKING:
    from collab_server.rooms.registry import RoomRegistry

logger = logging.getLogger(__name__)


class RoomEvents(RoomListener):
    def __init__(
        self,
        registry: RoomRegistry,
        store: Store,
        metrics: Metrics,
        replication: Replication,
        jobs: Jobs,
        compaction: Compaction,
        checkpoints: Checkpoints,
    ) -> None:
        self._registry = registry
        self._store = store
        self._metrics = metrics
        self._replication = replication
        self._jobs = jobs
        self._compaction = compaction
        self._checkpoints = checkpoints

    def update_stored(self, room: Room, merged: bytes, seqs: list[int], size: int) -> None:
        self._metrics.updates_stored += len(seqs)
        self._metrics.update_bytes_stored += size
        self._compaction.after_append(room)
        self._checkpoints.after_edit(room)
        self._registry.authorship.after_edit(room.id, room.authorship)
        self._replication.updates_stored(room.id, merged, seqs)

    def update_refused(self, room: Room, error: UpdateRefused) -> None:
        self._metrics.updates_refused[error.kind] += 1
        logger.info("room %s: %s", room.id, error.reason)

    def room_broken(self, room: Room, reason: str) -> None:
        self._metrics.rooms_broken += 1
        self._registry.drop(room)

    def language_changed(self, room: Room) -> None:
        """Keep the store's copy of the language (for REST views of unloaded rooms) current."""
        self._jobs.start(self._write_language(room), f"room {room.id}: language")

    async def _write_language(self, room: Room) -> None:
        # Read when the write runs: the document's transaction that changed it is over by then.
        await self._store.set_language(room.id, room.language)

    def awareness_changed(self, room: Room, entries: list[AwarenessEntry]) -> None:
        self._replication.awareness_changed(room.id, entries)

    def room_missing(self, room: Room) -> None:
        if self._jobs.running and self._registry.loaded(room.id) is room:  # not shutting down
            self._jobs.start(self._registry.forget(room.id, only=room), f"room {room.id}: forget")
