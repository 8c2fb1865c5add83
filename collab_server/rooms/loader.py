"""Reading a room from the store into memory, checked first; quarantining a room whose stored
history cannot be replayed; and an admin's recovery of such a room."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from collab_server.protocol.update import UpdateLimits
from collab_server.rooms import snapshot
from collab_server.rooms.compaction import Compaction
from collab_server.rooms.document import CrdtFailure, is_panic
from collab_server.rooms.jobs import guarded
from collab_server.rooms.quarantine import Quarantine, RoomQuarantined
from collab_server.rooms.room import EMPTY_UPDATE
from persistence import BUFFERED, RoomMissing, RoomRecord, Store, StoreUnavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Loaded:
    record: RoomRecord
    state: snapshot.Replay
    log_rows: int  # updates in the log after the snapshot
    log_bytes: int


class RoomLoader:
    def __init__(self, store: Store, limits: UpdateLimits, compaction: Compaction) -> None:
        self.quarantine = Quarantine()
        self._store = store
        self._limits = limits
        self._compaction = compaction

    async def read(self, room_id: str, *, create: bool) -> Loaded:
        """The room as stored, checked and replayed; `create` makes a missing one, otherwise
        `RoomMissing`. Raises `RoomQuarantined` if its history cannot be replayed."""
        self.quarantine.check(room_id)
        if create:
            record = await self._store.ensure_room(room_id)
        elif (found := await self._store.get_room(room_id)) is not None:
            record = found
        else:
            raise RoomMissing(f"room {room_id!r} does not exist")
        # A log that cannot be squashed is quarantined just below.
        await guarded(
            self._compaction.before_load(room_id, record.log_rows), f"room {room_id}: compaction"
        )
        log = await self._store.load(room_id)
        parts = snapshot.log_parts(log)
        try:
            # Checking and applying a long log took seconds (a fuzzed room's 3.9 s stalled every
            # other room): off the event loop, which gets the GIL back between updates.
            state = await asyncio.to_thread(snapshot.load_stored, parts, self._limits)
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
        return Loaded(record, state, len(log.updates), log.log_bytes)

    async def recover(self, room_id: str, *, dry_run: bool) -> snapshot.Recovery:
        """Rebuild a room's document from its stored log, leaving out the stored updates that
        cannot be replayed, store it as the room's snapshot and lift its quarantine."""
        log = await self._store.load(room_id)
        try:
            result = await asyncio.to_thread(
                snapshot.recover, snapshot.log_parts(log), self._limits
            )
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
            through = await self._store.append(room_id, EMPTY_UPDATE)
            if through == BUFFERED:
                raise StoreUnavailable("the store is buffering writes; recover the room later")
            await self._store.compact(room_id, result.squashed.snapshot, through, keep)
        self.quarantine.lift(room_id)
        logger.info(
            "room %s recovered: %d of %d stored updates dropped",
            room_id,
            len(result.dropped),
            result.parts,
        )
        return result
