"""Copying rooms from one store to another: SQLite to PostgreSQL when a team outgrows a laptop.

Bytes only, like the rest of this package: the snapshot and the log tail go over as they are (the
snapshot as the first update), so the copy holds exactly what the source held; the server
compacts it again when the room is next loaded. Versions go over with their times and labels,
each whole (one Yjs merge of its parts), and who wrote what goes with them. Run it with no
server writing to either store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from pycrdt import merge_updates

from persistence.base import (
    BUFFERED,
    RoomExists,
    RoomMissing,
    Store,
    StoreError,
    StoreUnavailable,
    VersionRecord,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopiedRoom:
    room_id: str
    copied: bool  # False: the target already had a room with this id, which was left alone
    updates: int  # rows written (a snapshot counts as one)
    size_bytes: int
    versions: int = 0


async def copy_rooms(
    source: Store, target: Store, room_ids: Iterable[str] | None = None
) -> list[CopiedRoom]:
    """Copy every room of `source` (or those named) that `target` lacks; rooms it has are skipped.

    Raises `RoomMissing` for a named room the source does not have, before anything is written.
    """
    records = {record.id: record for record in await source.list_rooms()}
    wanted = list(records) if room_ids is None else list(room_ids)
    missing = [room_id for room_id in wanted if room_id not in records]
    if missing:
        raise RoomMissing(f"the source has no room {', '.join(map(repr, missing))}")
    results = []
    for room_id in wanted:
        record = records[room_id]
        log = await source.load(room_id)
        updates = ([log.snapshot] if log.snapshot is not None else []) + log.updates
        try:
            await target.create_room(room_id, record.name, record.language)
        except RoomExists:
            logger.info("room %s: the target has it already; skipped", room_id)
            results.append(CopiedRoom(room_id, False, 0, 0))
            continue
        try:
            if updates and BUFFERED in await target.append_many(room_id, updates):
                # Accepted into an outage buffer is not written: a copy must be durable.
                raise StoreUnavailable(f"the target could not store room {room_id!r} now")
            versions = await _copy_versions(source, target, room_id)
            await target.save_authorship(room_id, await source.load_authorship(room_id))
        except Exception:
            # A half-copied room would be skipped by the next run: leave none behind.
            try:
                await target.delete_room(room_id)
            except StoreError:
                logger.error(
                    "room %s is half copied: delete it from the target before copying again",
                    room_id,
                )
            raise
        size = sum(map(len, updates))
        logger.info(
            "room %s: copied %d updates (%d bytes), %d versions",
            room_id,
            len(updates),
            size,
            versions,
        )
        results.append(CopiedRoom(room_id, True, len(updates), size, versions))
    return results


async def _copy_versions(source: Store, target: Store, room_id: str) -> int:
    """The room's versions, oldest first (so their order holds), each with its time."""
    found: list[VersionRecord] = []
    while page := await source.page_versions(room_id, 500, before=found[-1].id if found else None):
        found.extend(page)
    for version in reversed(found):
        parts = await source.version_parts(room_id, version.id)
        if parts is None:
            continue  # deleted meanwhile
        state = parts[0] if len(parts) == 1 else merge_updates(*parts)
        await target.save_version(
            room_id,
            state,
            label=version.label,
            automatic=version.automatic,
            authors=version.authors,
            created_at=version.created_at,
        )
    return len(found)
