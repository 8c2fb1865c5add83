"""The rooms of this process: single-flight loading, leases, idle unload, compaction.

Whoever uses a room holds a lease on it (`async with registry.lease(room_id) as room`). Any number
of concurrent first joins share one load. A room whose last lease is released stays in memory for
`room_idle_seconds`, then is compacted and unloaded. Background work runs in the registry's task
group and is awaited when the registry closes.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from functools import partial
from types import TracebackType
from typing import Any

from pycrdt import merge_updates

from collab_server.cluster.bus import RedisBus
from collab_server.cluster.messages import BusMessage, Kind
from collab_server.metrics import Gauges, Metrics
from collab_server.protocol import (
    AwarenessEntry,
    CloseCode,
    ProtocolError,
    decode_awareness,
    encode_awareness,
)
from collab_server.protocol.update import UpdateRefused
from collab_server.rooms import snapshot
from collab_server.rooms.document import CrdtFailure, is_panic
from collab_server.rooms.quarantine import Quarantine, RoomQuarantined
from collab_server.rooms.room import EMPTY_UPDATE, Room, RoomListener
from collab_server.settings import Settings
from persistence import BUFFERED, RoomMissing, Store, StoreError, StoreUnavailable

logger = logging.getLogger(__name__)

ROOM_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
SHUTDOWN_FLUSH_SECONDS = 10.0


def is_valid_room_id(room_id: str) -> bool:
    return ROOM_ID_PATTERN.fullmatch(room_id) is not None


class RoomRegistry(RoomListener):
    def __init__(
        self,
        store: Store,
        settings: Settings,
        bus: RedisBus | None = None,
    ) -> None:
        self.store = store
        self.metrics = Metrics()  # what /metrics serves; the transport counts into it too
        self._settings = settings
        self._bus = bus  # other server processes sharing the store, if any
        self._early: dict[str, list[BusMessage]] = {}  # bus messages for rooms still loading
        self._rooms: dict[str, Room] = {}
        self._loading: dict[str, asyncio.Task[Room]] = {}
        self._forgotten: set[str] = set()  # deleted while their load was in flight
        self._idle_timers: dict[str, asyncio.TimerHandle] = {}
        self._compacting: set[str] = set()
        self._tasks: asyncio.TaskGroup | None = None
        self.limits = settings.update_limits
        self.quarantine = Quarantine()

    async def __aenter__(self) -> RoomRegistry:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for timer in self._idle_timers.values():
            timer.cancel()
        self._idle_timers.clear()
        for room in list(self._rooms.values()):
            room.close_peers(CloseCode.GOING_AWAY, "server shutting down")
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            return
        # Compact what is loaded and let running work finish, within a bound.
        for room_id in list(self._rooms):
            tasks.create_task(self._guarded(self._unload(room_id), f"room {room_id}: unload"))
        try:
            async with asyncio.timeout(SHUTDOWN_FLUSH_SECONDS):
                await tasks.__aexit__(None, None, None)
        except TimeoutError:
            logger.warning(
                "background work still running after %.0f s; cancelled", SHUTDOWN_FLUSH_SECONDS
            )

    # -- leases -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._tasks is not None

    @asynccontextmanager
    async def lease(self, room_id: str, *, create: bool = True) -> AsyncIterator[Room]:
        """Hold a room in memory, loading it first if needed: creating it, or (`create=False`,
        for readers and REST calls on a named room) raising `RoomMissing` if it does not exist,
        so that nothing but a joining editor brings back a room deleted a moment before."""
        room = await self._get(room_id, create)
        room.leases += 1
        timer = self._idle_timers.pop(room_id, None)
        if timer is not None:
            timer.cancel()
        try:
            yield room
        finally:
            room.leases -= 1
            if room.leases == 0 and self._rooms.get(room_id) is room:
                self._schedule_unload(room_id)

    def loaded(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def peer_count(self, room_id: str) -> int:
        room = self._rooms.get(room_id)
        return len(room.peers) if room else 0

    def gauges(self) -> Gauges:
        return Gauges(
            rooms_loaded=len(self._rooms),
            peers=sum(len(room.peers) for room in self._rooms.values()),
            store_ready=self.store.is_ready(),
            rooms_quarantined=len(self.quarantine),
        )

    async def _get(self, room_id: str, create: bool) -> Room:
        while True:
            room = self._rooms.get(room_id)
            if room is not None:
                return room
            self.quarantine.check(room_id)
            loading = self._loading.get(room_id)
            if loading is not None and loading.done():
                loading = None  # failed, and its entry not yet cleared: awaiting it would spin
            joined = loading is not None
            if loading is None:
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
            if self._bus is not None:
                # Subscribed before reading the store: nothing published meanwhile is missed.
                self._early[room_id] = []
                await self._bus.subscribe(room_id, lambda message: self._on_bus(room_id, message))
            room = await self._read(room_id, create)
        except Exception:
            if self._bus is not None:
                await self._bus.unsubscribe(room_id)
            raise
        finally:
            early = self._early.pop(room_id, [])
            self._forgotten.discard(room_id)
        for message in early:
            self._on_bus(room_id, message)
        if self._bus is not None:
            self._bus.publish(room_id, Kind.QUERY_AWARENESS)
        return room

    async def _read(self, room_id: str, create: bool) -> Room:
        if create:
            record = await self.store.ensure_room(room_id)
        elif (found := await self.store.get_room(room_id)) is not None:
            record = found
        else:
            raise RoomMissing(f"room {room_id!r} does not exist")
        if record.log_rows > self._settings.compact_after_updates:
            # Off the event loop; a log that cannot be squashed is quarantined just below.
            await self._guarded(self._compact_stored(room_id), f"room {room_id}: compaction")
        log = await self.store.load(room_id)
        parts = snapshot.log_parts(log)
        try:
            # Checking a large log takes a while in Python: off the event loop.
            shape = await asyncio.to_thread(snapshot.check_stored, parts, self.limits)
            state = snapshot.Replay(snapshot.build_stored(parts), shape)
        except snapshot.LogUnreplayable as error:
            quarantined = self.quarantine.add(room_id, error.reason)
            logger.error(
                "room %s quarantined: stored update %d of %d cannot be replayed (%s); "
                "POST /api/rooms/%s/recover drops what cannot be replayed",
                room_id,
                error.index,
                len(parts),
                error.reason,
                room_id,
            )
            raise RoomQuarantined(quarantined) from error
        self.quarantine.lift(room_id)
        room = Room(
            room_id,
            state,
            self.store,
            limits=self.limits,
            log_rows=len(log.updates),
            log_bytes=log.log_bytes,
            listener=self,
        )
        if room_id in self._forgotten:  # deleted after it was read: it must not come back
            raise RoomMissing(f"room {room_id!r} was deleted while it was loading")
        self._rooms[room_id] = room
        if room.language != record.language:
            self.language_changed(room)  # the store's copy lags (a failed write, an old server)
        logger.info(
            "room %s loaded (%d log updates, %d bytes)", room_id, len(log.updates), log.log_bytes
        )
        return room

    # -- background work ----------------------------------------------------------------------

    def _start(self, work: Coroutine[Any, Any, None], what: str) -> None:
        if self._tasks is None:
            work.close()
            raise RuntimeError("the room registry is not running")
        self._tasks.create_task(self._guarded(work, what))

    @staticmethod
    async def _guarded(work: Coroutine[Any, Any, None], what: str) -> None:
        # A failed job is logged; it must not cancel its siblings in the task group, nor the
        # lifespan above it (a yrs panic is a BaseException).
        try:
            await work
        except StoreError as error:
            logger.warning("%s failed: %s", what, error)
        except (CrdtFailure, snapshot.LogUnreplayable) as error:
            logger.error("%s failed: %s", what, error)
        except Exception:
            logger.exception("%s failed", what)
        except BaseException as error:
            if not is_panic(error):
                raise
            logger.error("%s failed: the CRDT core panicked: %s", what, error)

    def _after_append(self, room: Room) -> None:
        settings = self._settings
        if room.id in self._compacting or not self.store.is_ready():
            return  # in a store outage compaction could only fail; it runs after the next append
        if (
            room.log_rows >= settings.compact_after_updates
            or room.log_bytes >= settings.compact_after_bytes
        ):
            self._compacting.add(room.id)
            self._start(self._compact(room), f"room {room.id}: compaction")

    async def _compact_stored(self, room_id: str) -> None:
        await snapshot.compact(self.store, room_id, self.limits)

    async def _compact(self, room: Room) -> None:
        rows, size = room.log_rows, room.log_bytes
        try:
            if await snapshot.compact(self.store, room.id, self.limits):
                # Updates appended while compacting are still in the log.
                room.log_rows = max(0, room.log_rows - rows)
                room.log_bytes = max(0, room.log_bytes - size)
        finally:
            self._compacting.discard(room.id)

    def _schedule_unload(self, room_id: str) -> None:
        loop = asyncio.get_running_loop()
        self._idle_timers[room_id] = loop.call_later(
            self._settings.room_idle_seconds, self._unload_if_idle, room_id
        )

    def _unload_if_idle(self, room_id: str) -> None:
        self._idle_timers.pop(room_id, None)
        if self._tasks is not None:
            self._start(self._unload(room_id), f"room {room_id}: unload")

    async def _unload(self, room_id: str) -> None:
        """Drop an idle room from memory and compact its log.

        Nothing is pending: every append was awaited by the lease holder that made it.
        """
        room = self._rooms.get(room_id)
        if room is None or room.leases > 0:
            return
        if not self.store.is_ready() and self._tasks is not None:
            # The store could not load it back: keep serving it from memory until it recovers.
            logger.info("room %s idle but the store is not ready; kept in memory", room_id)
            self._schedule_unload(room_id)
            return
        del self._rooms[room_id]
        logger.info("room %s unloaded", room_id)
        if self._bus is not None:
            await self._bus.unsubscribe(room_id)
        if room.log_rows > 0:
            await snapshot.compact(self.store, room_id, self.limits)

    # -- recovery -------------------------------------------------------------------------------

    async def recover(self, room_id: str, *, dry_run: bool = False) -> snapshot.Recovery:
        """Rebuild a room's document from its stored log, leaving out the stored updates that
        cannot be replayed, store it as the room's snapshot and lift its quarantine.

        A room in memory replayed fine when it loaded: nothing is dropped from it.
        """
        if room_id in self._rooms:
            return snapshot.Recovery(0, [], 0, None)
        log = await self.store.load(room_id)
        try:
            result = await asyncio.to_thread(snapshot.recover, snapshot.log_parts(log), self.limits)
        except BaseException as error:
            if not is_panic(error):
                raise
            raise CrdtFailure(f"the CRDT core panicked: {error}", panicked=True) from error
        if dry_run:
            return result
        if result.squashed is not None:
            keep = snapshot.kept_seqs(log, result.squashed.kept)
            if keep is None:
                raise snapshot.NotRecoverable("the stored snapshot waits for a missing update")
            for index in result.dropped:
                logger.warning(
                    "room %s: recovery drops stored update %d of %d", room_id, index, result.parts
                )
            # One more (empty) update, so that the new snapshot covers the whole log.
            through = await self.store.append(room_id, EMPTY_UPDATE)
            if through == BUFFERED:
                raise StoreUnavailable("the store is buffering writes; recover the room later")
            await self.store.compact(room_id, result.squashed.snapshot, through, keep)
        self.quarantine.lift(room_id)
        logger.info(
            "room %s recovered: %d of %d stored updates dropped",
            room_id,
            len(result.dropped),
            result.parts,
        )
        return result

    # -- deletion -----------------------------------------------------------------------------

    async def delete(self, room_id: str) -> bool:
        """Delete a room and its history, closing its peers; False if it did not exist."""
        await self._forget(room_id)
        deleted = await self.store.delete_room(room_id)
        # Again: what loaded (or began loading) while the store deleted is gone as well.
        await self._forget(room_id)
        if self._bus is not None:
            self._bus.publish(room_id, Kind.DELETED)
        return deleted

    async def _forget(self, room_id: str, only: Room | None = None) -> None:
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
        timer = self._idle_timers.pop(room_id, None)
        if timer is not None:
            timer.cancel()
        if self._bus is not None:
            await self._bus.unsubscribe(room_id)

    # -- other server processes ---------------------------------------------------------------

    def update_stored(self, room: Room, updates: list[bytes], size: int) -> None:
        self.metrics.updates_stored += len(updates)
        self.metrics.update_bytes_stored += size
        self._after_append(room)
        if self._bus is not None:
            update = updates[0] if len(updates) == 1 else merge_updates(*updates)
            self._bus.publish(room.id, Kind.UPDATE, update)

    def update_refused(self, room: Room, error: UpdateRefused) -> None:
        self.metrics.updates_refused[error.kind] += 1
        logger.info("room %s: %s", room.id, error.reason)

    def room_broken(self, room: Room, reason: str) -> None:
        self.metrics.rooms_broken += 1
        if self._rooms.get(room.id) is room:
            del self._rooms[room.id]
            room.close_peers(CloseCode.INTERNAL_ERROR, "room reloading")
            if self._tasks is not None and self._bus is not None:
                self._start(self._bus.unsubscribe(room.id), f"room {room.id}: unsubscribe")

    def language_changed(self, room: Room) -> None:
        """Keep the store's copy of the language (for REST views of unloaded rooms) current."""
        self._start(self._write_language(room), f"room {room.id}: language")

    async def _write_language(self, room: Room) -> None:
        # Read when the write runs: the document's transaction that changed it is over by then.
        await self.store.set_language(room.id, room.language)

    def awareness_changed(self, room: Room, entries: list[AwarenessEntry]) -> None:
        if self._bus is not None:
            self._bus.publish(room.id, Kind.AWARENESS, encode_awareness(entries))

    def catch_up_all(self) -> None:
        """The bus lost messages: every loaded room reads what it missed from the store."""
        for room in list(self._rooms.values()):
            self._start(self._catch_up(room), f"room {room.id}: catch-up")

    async def _catch_up(self, room: Room) -> None:
        try:
            log = await self.store.load(room.id)
        except RoomMissing:
            # Deleted by another process while this one could not hear it say so.
            logger.info("room %s was deleted elsewhere", room.id)
            await self._forget(room.id, only=room)
            return
        await room.catch_up(log)

    async def _apply_remote(self, room: Room, update: bytes) -> None:
        await room.apply_remote_updates([update])
        self._after_append(room)

    def room_missing(self, room: Room) -> None:
        if self._tasks is not None and self._rooms.get(room.id) is room:  # not shutting down
            self._start(self._forget(room.id, only=room), f"room {room.id}: forget")

    def _on_bus(self, room_id: str, message: BusMessage) -> None:
        room = self._rooms.get(room_id)
        if room is None:
            if room_id in self._early:
                self._early[room_id].append(message)
            return
        if message.kind is Kind.UPDATE:
            # A task each, started in order: the room applies them in the order they came.
            self._start(self._apply_remote(room, message.payload), f"room {room_id}: update")
        elif message.kind is Kind.AWARENESS:
            try:
                room.apply_remote_awareness(decode_awareness(message.payload))
            except ProtocolError as error:
                logger.warning("room %s: bad awareness from another process: %s", room_id, error)
        elif message.kind is Kind.QUERY_AWARENESS:
            if self._bus is not None and (entries := room.local_awareness()):
                self._bus.publish(room_id, Kind.AWARENESS, encode_awareness(entries))
        elif message.kind is Kind.DELETED:
            self._start(self._forget(room_id), f"room {room_id}: deleted elsewhere")
        elif message.kind is Kind.RESYNC:
            self._start(self._catch_up(room), f"room {room_id}: catch-up")
