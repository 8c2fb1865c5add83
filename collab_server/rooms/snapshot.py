"""Building documents from the store, and squashing a room's log into one snapshot."""

from __future__ import annotations

import asyncio
import logging

from pycrdt import get_update, merge_updates

from collab_server.rooms.document import Document, new_document
from persistence import Store, StoredLog

logger = logging.getLogger(__name__)


def doc_from_log(log: StoredLog) -> Document:
    doc = new_document()
    with doc.transaction():
        if log.snapshot is not None:
            doc.apply_update(log.snapshot)
        for update in log.updates:
            doc.apply_update(update)
    return doc


def squash(log: StoredLog) -> bytes:
    """One update equivalent to the snapshot plus the log, as small as yrs can make it.

    The document's own encoding drops deleted content and joins runs of typing, which is what
    keeps cold loads fast. It also drops updates still waiting for a missing dependency, so those
    are merged back in byte for byte: nothing stored is ever lost by squashing.
    (`merge_updates` alone would keep everything but grows faster than linearly: about a minute
    for 100,000 keystrokes, against 0.2 s here.)
    """
    doc = doc_from_log(log)
    state = doc.get_state()
    squashed = doc.get_update()
    parts = [log.snapshot] if log.snapshot is not None else []
    pending = [
        update
        for update in [*parts, *log.updates]
        # The part of an update that the document's state vector does not cover: nothing but an
        # empty struct section (a leading zero byte) means it was fully integrated.
        if get_update(update, state)[:1] != b"\x00"
    ]
    if pending:
        logger.warning("squash kept %d updates with missing dependencies", len(pending))
        return merge_updates(squashed, *pending)
    return squashed


async def compact(store: Store, room_id: str) -> bool:
    """Merge a room's stored log into its snapshot; appends made meanwhile are kept."""
    log = await store.load(room_id)
    if not log.updates:
        return False
    # A Doc is bound to the thread that made it; squash builds and drops its own on the worker.
    snapshot = await asyncio.to_thread(squash, log)
    done = await store.compact(room_id, snapshot, log.last_seq)
    if done:
        logger.info(
            "room %s compacted %d updates (%d bytes) into a %d-byte snapshot",
            room_id,
            len(log.updates),
            log.log_bytes,
            len(snapshot),
        )
    return done
