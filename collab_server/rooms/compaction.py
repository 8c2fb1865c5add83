"""When a room's log is merged into its snapshot: past a number of rows or bytes, before a long
log is loaded, and when the room unloads. The merge itself is `snapshot.compact`."""

from __future__ import annotations

import asyncio

from collab_server.protocol.update import UpdateLimits
from collab_server.rooms import snapshot
from collab_server.rooms.jobs import Jobs
from collab_server.rooms.room import Room
from persistence import Store


class Compaction:
    def __init__(
        self,
        store: Store,
        limits: UpdateLimits,
        jobs: Jobs,
        *,
        after_updates: int,
        after_bytes: int,
    ) -> None:
        self._store = store
        self._limits = limits
        self._jobs = jobs
        self._after_updates = after_updates
        self._after_bytes = after_bytes
        self._running: set[str] = set()  # rooms being compacted in the background
        # Rooms typed in at the same pace reach the threshold together: squashed side by side,
        # their threads would take the GIL from the event loop for as long as all of them run.
        self._one_at_a_time = asyncio.Semaphore(1)

    def after_append(self, room: Room) -> None:
        """Compact in the background once the room's log is long enough."""
        if room.id in self._running or not self._store.is_ready():
            return  # in a store outage compaction could only fail; it runs after the next append
        if room.log_rows >= self._after_updates or room.log_bytes >= self._after_bytes:
            self._running.add(room.id)
            self._jobs.start(self._compact(room), f"room {room.id}: compaction")

    async def before_load(self, room_id: str, log_rows: int) -> None:
        """Squash a long stored log (off the event loop) before the room is read from it."""
        if log_rows > self._after_updates:
            await snapshot.compact(self._store, room_id, self._limits)

    async def at_unload(self, room: Room) -> None:
        if room.log_rows > 0:
            async with self._one_at_a_time:
                await snapshot.compact(self._store, room.id, self._limits, checked=_checked(room))

    async def _compact(self, room: Room) -> None:
        rows, size = room.log_rows, room.log_bytes
        try:
            async with self._one_at_a_time:
                done = await snapshot.compact(
                    self._store, room.id, self._limits, checked=_checked(room)
                )
            if done:
                # Updates appended while compacting are still in the log.
                room.log_rows = max(0, room.log_rows - rows)
                room.log_bytes = max(0, room.log_bytes - size)
        finally:
            self._running.discard(room.id)


def _checked(room: Room) -> bool:
    """Whether every update in the room's log has passed the checks. A broken room's may hold
    one that did not: another process stored it, and this one refused it (see
    `Room.apply_remote_updates`), so yrs must not get it unchecked."""
    return not room.broken
