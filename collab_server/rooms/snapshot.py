"""Building documents from the store, and squashing a room's log into one snapshot.

A document is rebuilt by applying the stored updates one by one, in the order the live
document applied them: so what a restart rebuilds is what clients saw.
Every stored update passes the same depth checks as a live one before yrs sees it, so a log
written before those checks existed cannot crash the process on load; one that cannot be
replayed is reported (`LogUnreplayable`) and its room quarantined by the registry.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass, field, replace

from pycrdt import get_update

from collab_server.protocol import ProtocolError
from collab_server.protocol.update import UpdateLimits, decode_update
from collab_server.rooms.document import (
    CrdtFailure,
    Document,
    apply_update,
    is_panic,
    new_document,
)
from collab_server.rooms.shape import DocumentShape
from persistence import Store, StoredLog

logger = logging.getLogger(__name__)


class LogUnreplayable(Exception):
    """A stored update cannot be replayed: refused by the checks, or by yrs."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"stored update {index} cannot be replayed: {reason}")
        self.index = index  # into [snapshot, *updates]
        self.reason = reason


def stored_limits(limits: UpdateLimits) -> UpdateLimits:
    """What binds a stored update: only what protects the process. A snapshot holds a whole
    document, which may have more structs than one live message may carry."""
    return replace(
        limits,
        max_structs=sys.maxsize,
        max_delete_ranges=sys.maxsize,
        max_unmerged_run=sys.maxsize,
    )


@dataclass
class Replay:
    doc: Document
    shape: DocumentShape
    kept: list[int] = field(default_factory=list)  # indices into the parts replayed
    dropped: list[int] = field(default_factory=list)


def replay(parts: list[bytes], limits: UpdateLimits, *, drop_failures: bool = False) -> Replay:
    """The document (and its shape) the stored `parts` make, applied one by one.

    Raises `LogUnreplayable` at the first part that cannot be replayed, or with
    `drop_failures` leaves such parts out (an admin's recovery of a quarantined room).
    """
    limits = stored_limits(limits)
    shape = DocumentShape(
        max_depth=limits.max_depth,
        max_pending=limits.max_pending_items,
        max_scan=limits.max_scan_items,
    )
    result = Replay(new_document(), shape)
    for index, update in enumerate(parts):
        try:
            result.shape.admit(decode_update(update, limits, strict=False), strict=False)
            apply_update(result.doc, update)
        except (ProtocolError, CrdtFailure) as error:
            reason = error.reason
            if not drop_failures:
                raise LogUnreplayable(index, reason) from error
            logger.warning(
                "replay left out stored update %d (%d bytes): %s", index, len(update), reason
            )
            if isinstance(error, CrdtFailure):
                # yrs may have taken part of it: start again from what was kept.
                kept, dropped = result.kept, result.dropped
                result = replay([parts[i] for i in kept], limits)
                result.kept, result.dropped = kept, dropped
            result.dropped.append(index)
            continue
        result.kept.append(index)
    return result


def check_stored(parts: list[bytes], limits: UpdateLimits) -> DocumentShape:
    """The shape of the document `parts` make, checked as `replay` checks them but without
    yrs: pure Python, so a load runs it off the event loop. Raises `LogUnreplayable`."""
    limits = stored_limits(limits)
    shape = DocumentShape(
        max_depth=limits.max_depth,
        max_pending=limits.max_pending_items,
        max_scan=limits.max_scan_items,
    )
    for index, update in enumerate(parts):
        try:
            shape.admit(decode_update(update, limits, strict=False), strict=False)
        except ProtocolError as error:
            raise LogUnreplayable(index, error.reason) from error
    return shape


def load_stored(parts: list[bytes], limits: UpdateLimits) -> Replay:
    """The shape and the document a stored log makes (for a thread: the document is used on
    the event loop's only once this returns). Raises `LogUnreplayable`."""
    shape = check_stored(parts, limits)
    return Replay(build_stored(parts), shape)


def build_stored(parts: list[bytes]) -> Document:
    """The document checked `parts` make. Raises `LogUnreplayable` if yrs fails on one.

    All in one transaction: the same content as one transaction each (yrs integrates each
    update as it comes either way), in half the time, which compaction pays every few seconds
    in a busy room."""
    doc = new_document()
    with doc.transaction():
        for index, update in enumerate(parts):
            try:
                apply_update(doc, update)
            except CrdtFailure as error:
                raise LogUnreplayable(index, error.reason) from error
    return doc


def log_parts(log: StoredLog) -> list[bytes]:
    return [log.snapshot, *log.updates] if log.snapshot is not None else list(log.updates)


def doc_from_log(log: StoredLog, limits: UpdateLimits | None = None) -> Document:
    return replay(log_parts(log), limits or UpdateLimits()).doc


@dataclass(frozen=True, slots=True)
class Squashed:
    """A log squashed: one snapshot, and the parts that must stay beside it."""

    snapshot: bytes
    kept: list[int]  # indices into the parts: updates still waiting for a missing one


def squash(
    parts: list[bytes], limits: UpdateLimits | None = None, *, checked: bool = False
) -> Squashed | None:
    """The document `parts` make as one update, as small as yrs can make it; None if that
    cannot be done without changing the document. `checked`: every part has passed the checks
    already (a loaded room's log: its load checked what was stored, its intake each update
    since), so yrs alone builds the document from them; the new snapshot is checked always.

    The document's own encoding drops deleted content and joins runs of typing, which is what
    keeps cold loads fast. It leaves out updates still waiting for a missing dependency, and
    yrs's `merge_updates` mangles those, so they stay in the log as they are, right after the
    snapshot. The result is replayed and compared with the log's document before it is used: a
    compaction never changes what a restart rebuilds.
    """
    limits = limits or UpdateLimits()
    # Checking a part decodes it in Python, the whole document for a snapshot: for a room that
    # takes hundreds of updates a second, checking again what was checked took most of the time.
    doc = build_stored(parts) if checked else replay(parts, limits).doc
    state = doc.get_state()
    snapshot = doc.get_update()
    # The part of an update that the document's state vector does not cover: nothing but an
    # empty struct section (a leading zero byte) means it was fully integrated.
    kept = [i for i, update in enumerate(parts) if get_update(update, state)[:1] != b"\x00"]
    if kept:
        logger.info("squash keeps %d updates that wait for missing ones", len(kept))
    try:
        rebuilt = replay([snapshot, *(parts[i] for i in kept)], limits).doc
    except LogUnreplayable as error:
        # Fuzzed rooms made yrs write their document in a form that does not read back.
        logger.warning(
            "squash: the document's own encoding is refused (%s); log kept", error.reason
        )
        return None
    if _fingerprint(rebuilt) != _fingerprint(doc):
        logger.warning("squash would change the document; the log is kept as it is")
        return None
    return Squashed(snapshot, kept)


def _fingerprint(doc: Document) -> bytes:
    """The document's content, encoded the same way whatever the history of its blocks."""
    return new_document(doc.get_update()).get_update()


@dataclass(frozen=True, slots=True)
class Recovery:
    """What replaying a log while leaving out what cannot be replayed gives."""

    parts: int
    dropped: list[int]  # indices into [snapshot, *updates]
    dropped_bytes: int
    squashed: Squashed | None  # the rest as a snapshot (kept: indices into the parts)


class NotRecoverable(Exception):
    """What is left of a log cannot be squashed without changing it."""


def recover(parts: list[bytes], limits: UpdateLimits) -> Recovery:
    """The document `parts` make without the ones that cannot be replayed, squashed. A snapshot
    that cannot be replayed is left out whole: the room then starts from the updates after it."""
    result = replay(parts, limits, drop_failures=True)
    if not result.dropped:
        return Recovery(len(parts), [], 0, None)
    dropped_bytes = sum(len(parts[index]) for index in result.dropped)
    squashed = squash([parts[index] for index in result.kept], limits)
    if squashed is None:
        raise NotRecoverable("what is left cannot be squashed without changing it")
    kept = [result.kept[index] for index in squashed.kept]
    return Recovery(len(parts), result.dropped, dropped_bytes, Squashed(squashed.snapshot, kept))


def kept_seqs(log: StoredLog, kept: list[int]) -> list[int] | None:
    """The sequence numbers of the kept parts of `log`; None if the old snapshot is one."""
    first_update = 1 if log.snapshot is not None else 0
    if any(index < first_update for index in kept):
        return None
    return [log.seqs[index - first_update] for index in kept]


async def compact(
    store: Store, room_id: str, limits: UpdateLimits | None = None, *, checked: bool = False
) -> bool:
    """Merge a room's stored log into its snapshot; appends made meanwhile are kept.
    `checked`: the room is loaded, so its log has passed the checks (see `squash`)."""
    log = await store.load(room_id)
    if not log.updates:
        return False
    # A Doc is bound to the thread that made it; squash builds and drops its own on the worker.
    try:
        squashed = await asyncio.to_thread(squash, log_parts(log), limits, checked=checked)
    except BaseException as error:
        if not is_panic(error):
            raise
        raise CrdtFailure(
            f"the CRDT core panicked while squashing: {error}", panicked=True
        ) from error
    keep = kept_seqs(log, squashed.kept) if squashed is not None else None
    if squashed is None or keep is None:
        return False
    done = await store.compact(room_id, squashed.snapshot, log.last_seq, keep)
    if done:
        logger.info(
            "room %s compacted %d updates (%d bytes) into a %d-byte snapshot, %d kept",
            room_id,
            len(log.updates),
            log.log_bytes,
            len(squashed.snapshot),
            len(keep),
        )
    return done
