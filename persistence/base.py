"""The store interface: rooms and their update logs, as bytes. No CRDT knowledge here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Protocol

# What `Store.append` returns for an update it accepted into memory during a database outage: its
# sequence number is given when the outage buffer is written (see docs/postgres.md).
BUFFERED: Final = 0


class StoreError(Exception):
    """The store could not do what was asked; the message says what and for which room."""


class StoreUnavailable(StoreError):
    """The backing database is out of reach; the caller may try again later."""


class RoomExists(StoreError):
    """`create_room` was asked for an id that is taken."""


class RoomMissing(StoreError):
    """The room does not exist (never created, or deleted)."""


@dataclass(frozen=True, slots=True)
class RoomRecord:
    id: str
    name: str
    language: str | None
    created_at: datetime
    updated_at: datetime
    size_bytes: int  # snapshot plus log
    log_rows: int  # updates not yet merged into the snapshot


class BaseVersionGone(StoreError):
    """The version a new one was to be built on is deleted for good."""


@dataclass(frozen=True, slots=True)
class StoredLog:
    """A room's durable state: the latest snapshot and the updates in the log after it."""

    snapshot: bytes | None
    updates: list[bytes]
    last_seq: int  # the highest sequence number covered by the snapshot and the updates
    seqs: list[int] = field(default_factory=list)  # each update's sequence number

    @property
    def log_bytes(self) -> int:
        return sum(len(update) for update in self.updates)


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """A saved version of a room's document (its state is read with `Store.version_parts`)."""

    id: int  # unique in the store, growing: a newer version has a larger id
    room_id: str
    created_at: datetime
    label: str | None  # a named version's; None for an automatic checkpoint
    automatic: bool
    authors: tuple[str, ...]  # who edited since the previous version
    size_bytes: int  # what it keeps: the whole document, or what changed since `base`
    base: int | None = None  # the version it is a change to; None: it keeps the whole document


@dataclass(frozen=True, slots=True)
class Author:
    """A person the server saw write to a room."""

    name: str
    user: str | None = None  # the `sub` of their access token; None without one
    self_declared: bool = False  # the name came from their own presence, not from a token


@dataclass(frozen=True, slots=True)
class AuthorRange:
    """Who wrote one client's items from `clock` for `length` clock ticks, and when (the last
    of them). Keyed by (client, clock) in a room: saving a range again replaces it."""

    client: int
    clock: int
    length: int
    author: Author
    time: datetime


class Store(Protocol):
    """Durable storage of rooms. Every method may raise `StoreError`.

    Sequence numbers are per room, start at 1 and only grow; a compaction replaces the updates up
    to some sequence number by one snapshot in a single transaction.
    """

    async def open(self) -> None: ...

    async def close(self) -> None:
        """Write everything still pending, then release the connections."""

    def is_ready(self) -> bool:
        """Whether the store currently accepts durable writes."""

    async def create_room(self, room_id: str, name: str, language: str | None) -> RoomRecord:
        """Create a room; raise `RoomExists` if the id is taken."""

    async def ensure_room(self, room_id: str) -> RoomRecord:
        """Return the room, creating it (named after its id) if it does not exist."""

    async def get_room(self, room_id: str) -> RoomRecord | None: ...

    async def list_rooms(self) -> list[RoomRecord]:
        """Every room, by id (for copies and tools; the API pages with `page_rooms`)."""

    async def page_rooms(self, limit: int, after: str | None = None) -> list[RoomRecord]:
        """Up to `limit` rooms, newest first (by creation, then id); `after`: the id of the last
        room of the previous page (none come after a room that no longer exists)."""

    async def set_language(self, room_id: str, language: str | None) -> None:
        """Keep the store's copy of the language (the document's `meta` map holds the truth)."""

    async def rename_room(self, room_id: str, name: str) -> bool:
        """Give the room a new display name; False if it does not exist."""

    async def delete_room(self, room_id: str) -> bool:
        """Delete the room and its whole history; False if it did not exist."""

    async def load(self, room_id: str) -> StoredLog:
        """The room's snapshot and log tail; raise `RoomMissing` if there is no such room."""

    async def append(self, room_id: str, update: bytes) -> int:
        """Append one update and return its sequence number once it is durable.

        A store that rides out database outages (PostgreSQL) may instead accept the update into a
        bounded in-memory buffer and return `BUFFERED`; it then reports not ready until the buffer
        is written, in order. When that buffer is full it raises `StoreUnavailable`.
        """

    async def append_many(self, room_id: str, updates: list[bytes]) -> list[int]:
        """Append updates in order, in the same batch; their sequence numbers, as `append`."""

    async def last_seqs(self, room_ids: Sequence[str]) -> dict[str, int]:
        """Each room's highest sequence number, as `load` gives it (`last_seq`), in one cheap
        read: how server processes sharing the store notice updates they never heard of.
        Rooms that do not exist are left out."""

    async def discard(self, room_id: str, seqs: list[int]) -> int:
        """Remove these updates from the log (ones the server could not apply after storing
        them, before anyone saw them); return how many were still there to remove."""

    async def compact(
        self, room_id: str, snapshot: bytes, through_seq: int, keep: Sequence[int] = ()
    ) -> bool:
        """Replace the updates up to `through_seq` by `snapshot`, atomically, but for those
        numbered in `keep`, which stay in the log (and load right after the snapshot).

        `snapshot` must cover the stored snapshot and every other update up to `through_seq`.
        Returns False (and changes nothing) if the stored snapshot already covers `through_seq`.
        """

    async def save_version(
        self,
        room_id: str,
        state: bytes,
        *,
        label: str | None,
        automatic: bool,
        authors: Sequence[str],
        created_at: datetime | None = None,
        base: int | None = None,
    ) -> VersionRecord:
        """Keep a new version of the room, made now (or at `created_at`: a copy keeps the
        original's time): `state` is the whole document as one update, or, with `base`, the
        update that makes it from version `base` (incremental checkpoints). Raise `RoomMissing`,
        or `BaseVersionGone` when `base` was deleted for good meanwhile.

        Versions live outside the log: compaction never touches them, and they go only with
        their room or `delete_version`. A deleted version that others are built on is hidden
        but kept (its bytes are theirs too) until the last of them goes."""

    async def page_versions(
        self, room_id: str, limit: int, before: int | None = None
    ) -> list[VersionRecord]:
        """Up to `limit` of the room's versions, newest first; `before`: only versions with a
        smaller id (the last id of the previous page)."""

    async def get_version(self, room_id: str, version_id: int) -> VersionRecord | None: ...

    async def count_named_versions(self, room_id: str) -> int:
        """How many versions someone saved (not automatic ones) the room keeps."""

    async def version_parts(self, room_id: str, version_id: int) -> list[bytes] | None:
        """What makes the document as it was in that version: a whole document, then each
        change on the way to it (one item for a version saved whole); None if there is none."""

    async def delete_version(self, room_id: str, version_id: int) -> bool:
        """False if the room has no such version."""

    async def prune_versions(self, room_id: str, keep: int, older_than: datetime | None) -> int:
        """Remove the room's automatic versions beyond the newest `keep`, and those made before
        `older_than`; named versions stay. Return how many went."""

    async def save_authorship(self, room_id: str, ranges: Sequence[AuthorRange]) -> None:
        """Keep who wrote these ranges of the room's items (replacing a range saved before with
        the same client and clock); nothing if the room no longer exists."""

    async def load_authorship(self, room_id: str) -> list[AuthorRange]:
        """Every range of authorship kept for the room, by client and clock."""
