"""The rooms of this process: leases, single-flight loading, idle unload, deletion.

Whoever uses a room holds a lease on it (`async with registry.lease(room_id) as room`). Any number
of concurrent first joins share one load. A room whose last lease is released stays in memory for
`room_idle_seconds`, then is compacted and unloaded. What the rooms do is passed on by
`RoomEvents`; what other server processes say reaches them through `ReplicaRooms`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from types import TracebackType

from collab_server.metrics import Gauges, Metrics
from collab_server.protocol import CloseCode
from collab_server.rooms.authorship import AuthorshipWriter
from collab_server.rooms.compaction import Compaction
from collab_server.rooms.events import RoomEvents
from collab_server.rooms.history import Checkpoints
from collab_server.rooms.idle import IdleTimers
from collab_server.rooms.jobs import Jobs, guarded
from collab_server.rooms.loader import RoomLoader
from collab_server.rooms.memory import MemoryReleaser
from collab_server.rooms.openings import Openings, RoomGate
from collab_server.rooms.quarantine import Quarantine
from collab_server.rooms.replicas import ReplicaRooms
from collab_server.rooms.replication import Replication, SingleProcess
from collab_server.rooms.room import Room
from collab_server.rooms.snapshot import Recovery
from collab_server.settings import Settings
from persistence import RoomMissing, Store

logger = logging.getLogger(__name__)


class RoomRegistry:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        metrics: Metrics,
        replication: Replication | None = None,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.limits = settings.update_limits
        self._replication = replication or SingleProcess()
        self._cluster_check_seconds = settings.cluster_check_seconds
        self._jobs = Jobs()
        self._compaction = Compaction(
            store,
            self.limits,
            self._jobs,
            after_updates=settings.compact_after_updates,
            after_bytes=settings.compact_after_bytes,
        )
        self._loader = RoomLoader(store, self.limits, self._compaction)
        self.checkpoints = Checkpoints(
            store,
            self._jobs,
            every_seconds=settings.version_every_seconds,
            keep=settings.versions_kept,
            max_age_days=settings.versions_max_age_days,
        )
        self.authorship = AuthorshipWriter(store, self._jobs)
        self._events = RoomEvents(
            self, store, metrics, self._replication, self._jobs, self._compaction, self.checkpoints
        )
        self._memory = MemoryReleaser()
        self.gate = RoomGate(
            settings.max_rooms_loaded, Openings(settings.room_openings_per_minute), metrics
        )
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Task[Room]] = {}
        self._forgotten: set[str] = set()  # deleted while their load was in flight
        self._idle = IdleTimers(settings.room_idle_seconds, self._unload_if_idle)

    async def __aenter__(self) -> RoomRegistry:
        await self._jobs.__aenter__()
        replicas = ReplicaRooms(self, self.store, self._replication, self._jobs, self._compaction)
        self._replication.listen(replicas, check_seconds=self._cluster_check_seconds)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._idle.cancel_all()
        self.authorship.cancel_all()
        if not self._jobs.running:
            return
        for room in list(self._rooms.values()):
            room.close_peers(CloseCode.GOING_AWAY, "server shutting down")
        # Compact what is loaded, and let running work finish, within a bound.
        for room_id in list(self._rooms):
            self._jobs.start(self._unload(room_id, closing=True), f"room {room_id}: unload")
        await self._jobs.__aexit__(exc_type, exc, traceback)

    @property
    def running(self) -> bool:
        return self._jobs.running

    @property
    def quarantine(self) -> Quarantine:
        return self._loader.quarantine

    # -- leases -------------------------------------------------------------------------------

    @asynccontextmanager
    async def lease(
        self, room_id: str, *, create: bool = True, opener: str | None = None
    ) -> AsyncIterator[Room]:
        """Hold a room in memory, loading it first if needed: creating it, or (`create=False`,
        for readers and REST calls on a named room) raising `RoomMissing` if it does not exist,
        so that nothing but a joining editor brings back a room deleted a moment before.

        Loading it is one of `opener`'s openings (a client address); `RoomsBusy` if it has
        none left, or if the process holds all the rooms it may."""
        room = await self._get(room_id, create, opener)
        room.leases += 1
        self._idle.cancel(room_id)
        try:
            yield room
        finally:
            room.leases -= 1
            if room.leases == 0 and self._rooms.get(room_id) is room:
                self._idle.start(room_id)

    def loaded(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def gauges(self) -> Gauges:
        return Gauges(
            rooms_loaded=len(self._rooms),
            peers=sum(len(room.peers) for room in self._rooms.values()),
            store_ready=self.store.is_ready(),
            rooms_quarantined=len(self.quarantine),
        )

    async def _get(self, room_id: str, create: bool, opener: str | None) -> Room:
        while True:
            room = self._rooms.get(room_id)
            if room is not None:
                return room
            loading = self._loading.get(room_id)
            if loading is not None and loading.done():
                loading = None  # failed, and its entry not yet cleared: awaiting it would spin
            joined = loading is not None
            if loading is None:
                self.gate.admit(room_id, opener, len(self._rooms) + len(self._loading))
                loading = asyncio.create_task(self._load(room_id, create), name=f"load {room_id}")
                self._loading[room_id] = loading
                loading.add_done_callback(partial(self._load_done, room_id))
            try:
                # Shielded: one caller giving up must not cancel the load the others wait for.
                return await asyncio.shield(loading)
            except RoomMissing:
                if not (create and joined):
                    raise
                # The load joined was one that may not create; this caller may: load again.

    def _load_done(self, room_id: str, task: asyncio.Task[Room]) -> None:
        if self._loading.get(room_id) is task:  # not a newer load of the same room
            del self._loading[room_id]

    async def _load(self, room_id: str, create: bool) -> Room:
        try:
            # Followed before reading the store: nothing another process stores meanwhile is
            # missed.
            await self._replication.follow(room_id)
            loaded = await self._loader.read(room_id, create=create)
            room = Room(
                room_id,
                loaded.state,
                self.store,
                limits=self.limits,
                log_rows=loaded.log_rows,
                log_bytes=loaded.log_bytes,
                listener=self._events,
            )
            if room_id in self._forgotten:  # deleted after it was read: it must not come back
                raise RoomMissing(f"room {room_id!r} was deleted while it was loading")
        except Exception:
            await self._replication.unfollow(room_id)
            raise
        finally:
            self._forgotten.discard(room_id)
        self._rooms[room_id] = room
        if room.language != loaded.record.language:  # the store's copy lags (a failed write)
            self._events.language_changed(room)
        logger.info(
            "room %s loaded (%d log updates, %d bytes)", room_id, loaded.log_rows, loaded.log_bytes
        )
        self._replication.loaded(room_id)
        return room

    # -- idle rooms ---------------------------------------------------------------------------

    def _unload_if_idle(self, room_id: str) -> None:
        if self._jobs.running:
            self._jobs.start(self._unload(room_id), f"room {room_id}: unload")

    async def _unload(self, room_id: str, *, closing: bool = False) -> None:
        """Drop an idle room from memory and compact its log.

        Nothing is pending: every append was awaited by the lease holder that made it.
        """
        room = self._rooms.get(room_id)
        if room is None or room.leases > 0:
            return
        if not self.store.is_ready() and not closing:
            # The store could not load it back: keep serving it from memory until it recovers.
            logger.info("room %s idle but the store is not ready; kept in memory", room_id)
            self._idle.start(room_id)
            return
        del self._rooms[room_id]
        logger.info("room %s unloaded", room_id)
        await self._replication.unfollow(room_id)
        await guarded(self.checkpoints.at_unload(room), f"room {room_id}: checkpoint")
        await guarded(self.authorship.save(room_id, room.authorship), f"room {room_id}: authorship")
        await self._compaction.at_unload(room)
        self._memory.after_unload()

    # -- recovery and deletion ------------------------------------------------------------------

    async def recover(self, room_id: str, *, dry_run: bool = False) -> Recovery:
        """Rebuild a quarantined room from its stored log, leaving out what cannot be replayed.
        A room in memory replayed fine when it loaded: nothing is dropped from it."""
        if room_id in self._rooms:
            return Recovery(0, [], 0, None)
        return await self._loader.recover(room_id, dry_run=dry_run)

    async def delete(self, room_id: str) -> bool:
        """Delete a room and its history, closing its peers; False if it did not exist."""
        await self.forget(room_id)
        deleted = await self.store.delete_room(room_id)
        # Again: what loaded (or began loading) while the store deleted is gone as well.
        await self.forget(room_id)
        self._replication.room_deleted(room_id)
        return deleted

    async def forget(self, room_id: str, only: Room | None = None) -> None:
        """Drop a deleted room from memory and close its peers (`only` that room object: not a
        newer room of the same id loaded meanwhile)."""
        if only is not None and self._rooms.get(room_id) is not only:
            return
        loading = self._loading.get(room_id)
        if loading is not None and not loading.done():
            self._forgotten.add(room_id)
        room = self._rooms.pop(room_id, None)
        if room is not None:
            room.deleted = True
            room.close_peers(CloseCode.ROOM_DELETED, "room deleted")
        self._idle.cancel(room_id)
        await self._replication.unfollow(room_id)

    def drop(self, room: Room) -> None:
        """Drop a room whose document can no longer be trusted (a later load checks its stored
        log again), closing its peers."""
        if self._rooms.get(room.id) is room:
            del self._rooms[room.id]
            room.close_peers(CloseCode.INTERNAL_ERROR, "room reloading")
            if self._jobs.running:
                self._jobs.start(self._replication.unfollow(room.id), f"room {room.id}: unfollow")
