"""A room's versions: saved (named by someone, or automatic), listed, read, compared and restored.

A version is the server's copy of the document at a moment, kept in the store beside the log
(`Store.save_version`) as the change since the version before it (one in `CHAIN_LENGTH` whole),
with the names of those who edited since the previous one. Restoring one is an ordinary edit:
the current text is changed into the version's by the minimal diff and stored and relayed like a
keystroke, so clients holding the current state follow it (swapping the stored document would
make them merge the old state back), and the state before it is saved as a version first, so the
restore can itself be undone.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from pycrdt import merge_updates

from collab_server.protocol.update import UpdateLimits, UpdateRefused, decode_update
from collab_server.rooms.blame import BlameRun, TextTooLarge, blame
from collab_server.rooms.client_state import decode_state_vector
from collab_server.rooms.document import Document, meta_of, new_document, text_of
from collab_server.rooms.editors import LastVersion
from collab_server.rooms.jobs import Jobs
from collab_server.rooms.room import Room
from collab_server.rooms.text_edit import changed_lines
from persistence import BaseVersionGone, Store, VersionRecord

if TYPE_CHECKING:
    from collab_server.rooms.registry import RoomRegistry

logger = logging.getLogger(__name__)

# Texts past this size are not diffed or blamed (413). Below it the line diff is bounded in
# steps as the text replacement's is (`text_edit`): a stretch past its budget shows as one
# changed block.
MAX_DIFF_BYTES = 2 * 1024 * 1024
DIFF_CONTEXT_LINES = 3
CURRENT = "current"  # the name of the room's current state where a version id goes
# A version is saved as the change since the one before, but one in this many is saved whole:
# reading a version merges at most this many parts.
CHAIN_LENGTH = 10


class VersionMissing(Exception):
    """The room has no such version."""


class TooManyVersions(Exception):
    """The room keeps as many named versions as it may."""


async def save_version(
    store: Store, room: Room, *, label: str | None, automatic: bool
) -> VersionRecord:
    """Save the room's document as it is now, naming who edited since the last version: as the
    change since the version this process saved last, or whole every `CHAIN_LENGTH` versions
    (and after a restart)."""
    editors, edits = room.editors.names(), room.editors.edits
    last, state_vector = room.editors.last_version, room.doc.get_state()
    saved = None
    if last is not None and last.chain < CHAIN_LENGTH:
        change = room.doc.get_update(last.state_vector)
        try:
            saved = await store.save_version(
                room.id, change, label=label, automatic=automatic, authors=editors, base=last.id
            )
        except BaseVersionGone:
            pass  # deleted for good meanwhile: this one is saved whole
    if saved is None:
        saved = await store.save_version(
            room.id, room.full_update(), label=label, automatic=automatic, authors=editors
        )
    chain = last.chain + 1 if saved.base is not None and last is not None else 1
    room.editors.last_version = LastVersion(saved.id, state_vector, chain)
    room.editors.version_saved(edits)
    return saved


class Checkpoints:
    """Automatic versions: while people edit, `every_seconds` after the first edit since the
    last version, and when an edited room leaves memory (its last client left); none when
    nothing changed. Each is followed by the retention: `keep` automatic versions at most,
    none older than `max_age_days` (named versions stay until deleted).

    Several processes may hold one room, each with its own editors: a checkpoint is left out
    when a version saved elsewhere makes it redundant (while editing, one younger than half the
    span; as the room leaves memory, one that holds this very document). The editors' names
    then go with this process's next version."""

    def __init__(
        self,
        store: Store,
        jobs: Jobs,
        *,
        every_seconds: float,
        keep: int,
        max_age_days: float,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._every = every_seconds
        self._keep = keep
        self._max_age = timedelta(days=max_age_days) if max_age_days else None
        self._now = now
        self._running: set[str] = set()  # rooms whose checkpoint is being saved

    def after_edit(self, room: Room) -> None:
        edited_at = room.editors.first_edit
        if not self._every or edited_at is None or room.id in self._running:
            return
        if self._now() - edited_at >= self._every and self._jobs.running:
            self._running.add(room.id)
            self._jobs.start(self._checkpoint(room, leaving=False), f"room {room.id}: checkpoint")

    async def at_unload(self, room: Room) -> None:
        if room.editors.first_edit is not None:
            await self._checkpoint(room, leaving=True)

    async def _checkpoint(self, room: Room, *, leaving: bool) -> None:
        try:
            if await self._redundant(room, leaving):
                room.editors.saved_elsewhere()
                logger.info("room %s: checkpoint left out: another process saved one", room.id)
                return
            saved = await save_version(self._store, room, label=None, automatic=True)
            pruned = await self.prune(room.id)
            logger.info("room %s: checkpoint %d (%d old ones removed)", room.id, saved.id, pruned)
        finally:
            self._running.discard(room.id)

    async def _redundant(self, room: Room, leaving: bool) -> bool:
        newest = await self._store.page_versions(room.id, 1)
        last = room.editors.last_version
        if not newest or (last is not None and newest[0].id == last.id):
            return False  # none, or this process's own: the span already separates them
        if not leaving:
            return datetime.now(UTC) - newest[0].created_at < timedelta(seconds=self._every / 2)
        parts = await self._store.version_parts(room.id, newest[0].id)
        return parts is not None and await asyncio.to_thread(
            same_document, parts, room.full_update()
        )

    async def prune(self, room_id: str) -> int:
        """The retention: how many automatic versions it removed."""
        older_than = datetime.now(UTC) - self._max_age if self._max_age else None
        return await self._store.prune_versions(room_id, self._keep, older_than)


class RoomHistory:
    def __init__(self, registry: RoomRegistry, *, named_max: int) -> None:
        """`named_max`: the named versions a room may keep (0: no limit)."""
        self._registry = registry
        self._store = registry.store
        self._named_max = named_max

    async def save(self, room_id: str, *, label: str | None, opener: str | None) -> VersionRecord:
        """Save the room's document as it is now, as a named version; raises `RoomMissing`, or
        `TooManyVersions` when the room keeps `named_max` already."""
        async with self._registry.lease(room_id, create=False, opener=opener) as room:
            if self._named_max:
                if await self._store.count_named_versions(room_id) >= self._named_max:
                    raise TooManyVersions(
                        f"room {room_id!r} keeps {self._named_max} named versions, the most it"
                        " may: delete some first"
                    )
            return await save_version(self._store, room, label=label, automatic=False)

    async def page(self, room_id: str, limit: int, before: int | None) -> list[VersionRecord]:
        return await self._store.page_versions(room_id, limit, before=before)

    async def get(self, room_id: str, version_id: int) -> VersionRecord:
        found = await self._store.get_version(room_id, version_id)
        if found is None:
            raise VersionMissing(f"room {room_id!r} has no version {version_id}")
        return found

    async def state(self, room_id: str, version_id: int) -> bytes:
        """The document then, as one update."""
        parts = await self._store.version_parts(room_id, version_id)
        if parts is None:
            raise VersionMissing(f"room {room_id!r} has no version {version_id}")
        return parts[0] if len(parts) == 1 else await asyncio.to_thread(merge_updates, *parts)

    async def text(self, room_id: str, version: int | str, name: str, opener: str | None) -> str:
        """The text `name` in a version, or in the room now (`CURRENT`)."""
        if version == CURRENT:
            async with self._registry.lease(room_id, create=False, opener=opener) as room:
                return str(room.text(name))
        state = await self.state(room_id, int(version))
        return await asyncio.to_thread(_text_in, state, name)

    async def diff(
        self, room_id: str, old: int | str, new: int | str, name: str, opener: str | None
    ) -> str:
        """A unified diff of the text `name` from one version (or `CURRENT`) to another."""
        before = await self.text(room_id, old, name, opener)
        after = await self.text(room_id, new, name, opener)
        if max(len(before.encode()), len(after.encode())) > MAX_DIFF_BYTES:
            raise TextTooLarge(f"texts over {MAX_DIFF_BYTES} bytes are not diffed")
        return await asyncio.to_thread(
            unified_diff, before, after, f"{room_id} version {old}", f"{room_id} version {new}"
        )

    async def blame(
        self, room_id: str, version: int | str, name: str, opener: str | None
    ) -> tuple[list[BlameRun], int]:
        """Who wrote each line of the text `name` in a version, or in the room now (`CURRENT`):
        runs of lines, and the number of lines."""
        writer = self._registry.authorship
        if version == CURRENT:
            async with self._registry.lease(room_id, create=False, opener=opener) as room:
                await writer.save(room_id, room.authorship)  # what was stamped just now too
                state = room.full_update()
        else:
            state = await self.state(room_id, int(version))
            if (loaded := self._registry.loaded(room_id)) is not None:
                await writer.save(room_id, loaded.authorship)
        ranges = await self._store.load_authorship(room_id)
        return await asyncio.to_thread(blame, state, name, ranges, MAX_DIFF_BYTES)

    async def delete(self, room_id: str, version_id: int) -> None:
        if not await self._store.delete_version(room_id, version_id):
            raise VersionMissing(f"room {room_id!r} has no version {version_id}")

    async def restore(
        self, room_id: str, version_id: int, names: list[str], *, opener: str | None
    ) -> tuple[VersionRecord, VersionRecord]:
        """Make the texts `names` and the `meta` map (the language and other room settings)
        what they were in the version, as one edit everyone follows; return the version saved
        just before and the one just after."""
        state = await self.state(room_id, version_id)
        texts, meta = await asyncio.to_thread(_contents, state, names)
        async with self._registry.lease(room_id, create=False, opener=opener) as room:
            before = await save_version(
                self._store, room, label=f"before restoring version {version_id}", automatic=True
            )
            await room.restore(texts, meta)
            after = await save_version(
                self._store, room, label=f"restored version {version_id}", automatic=True
            )
        await self._registry.checkpoints.prune(room_id)  # restores add automatic versions too
        return before, after


def same_document(parts: list[bytes], state: bytes) -> bool:
    """Whether a version (its parts) holds the document `state`: the same items (state vectors)
    and the same deletions (delete sets, whatever their ranges' splits)."""
    theirs = new_document(parts[0] if len(parts) == 1 else merge_updates(*parts))
    ours = new_document(state)
    their_clocks, our_clocks = theirs.get_state(), ours.get_state()
    if decode_state_vector(their_clocks) != decode_state_vector(our_clocks):
        return False
    # With the same items, what each has beyond the other is only its delete set.
    try:
        return _deleted(theirs.get_update(our_clocks)) == _deleted(ours.get_update(their_clocks))
    except UpdateRefused:  # a delete set past the decoder's limits: not shown the same, saved
        return False


def _deleted(update: bytes) -> dict[int, list[tuple[int, int]]]:
    """An update's delete set as each client's sorted, joined ranges."""
    ranges: dict[int, list[tuple[int, int]]] = {}
    for client, clock, length in sorted(decode_update(update, UpdateLimits()).deletes):
        joined = ranges.setdefault(client, [])
        if joined and clock <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(joined[-1][1], clock + length))
        else:
            joined.append((clock, clock + length))
    return ranges


def _text_in(state: bytes, name: str) -> str:
    return str(text_of(new_document(state), name))


def _contents(state: bytes, names: list[str]) -> tuple[dict[str, str], dict[str, object]]:
    """The texts `names` and the `meta` entries (the language among them) of a document."""
    doc: Document = new_document(state)
    meta: dict[str, object] = meta_of(doc).to_py() or {}
    return {name: str(text_of(doc, name)) for name in names}, meta


def unified_diff(before: str, after: str, old_label: str, new_label: str) -> str:
    """`diff -u` of two texts, from the bounded line diff `text_edit.changed_lines`."""
    a, b, blocks = changed_lines(before, after)
    if not blocks:
        return ""
    hunks: list[list[tuple[int, int, int, int]]] = []
    for block in blocks:  # blocks closer than twice the context share a hunk
        if hunks and block[0] - hunks[-1][-1][1] <= 2 * DIFF_CONTEXT_LINES:
            hunks[-1].append(block)
        else:
            hunks.append([block])
    out = [f"--- {old_label}\n", f"+++ {new_label}\n"]
    for hunk in hunks:
        first, last = hunk[0], hunk[-1]
        i_lo, i_hi = (
            max(0, first[0] - DIFF_CONTEXT_LINES),
            min(len(a), last[1] + DIFF_CONTEXT_LINES),
        )
        j_lo, j_hi = first[2] - (first[0] - i_lo), last[3] + (i_hi - last[1])
        out.append(f"@@ -{_range(i_lo, i_hi)} +{_range(j_lo, j_hi)} @@\n")
        at = i_lo
        for i1, i2, j1, j2 in hunk:
            out += [" " + line for line in a[at:i1]]
            out += ["-" + line for line in a[i1:i2]]
            out += ["+" + line for line in b[j1:j2]]
            at = i2
        out += [" " + line for line in a[at:i_hi]]
    # A last line without its newline would run into the next diff line: mark it as diff does.
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in out
    )


def _range(start: int, stop: int) -> str:
    """A hunk's line range as `diff -u` writes it (1-based; an empty range names the line
    before it)."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"
