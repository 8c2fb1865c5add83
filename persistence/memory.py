"""A store in process memory: for tests and throwaway servers (`memory://`)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from persistence.base import (
    AuthorRange,
    BaseVersionGone,
    RoomExists,
    RoomMissing,
    RoomRecord,
    StoredLog,
    VersionRecord,
)


@dataclass
class _Room:
    name: str
    language: str | None
    created_at: datetime
    updated_at: datetime
    snapshot: bytes | None = None
    snapshot_seq: int = 0
    log: list[tuple[int, bytes]] = field(default_factory=list)
    last_seq: int = 0
    versions: dict[int, tuple[VersionRecord, bytes]] = field(default_factory=dict)
    authorship: dict[tuple[int, int], AuthorRange] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)  # deleted, kept for the versions built on them

    def remove_version(self, version_id: int) -> None:
        """Delete it, or hide it while others are built on it; then the hidden versions it was
        built on that nothing needs any more."""
        at: int | None = version_id
        while at is not None:
            if any(record.base == at for record, _ in self.versions.values()):
                self.hidden.add(at)
                return
            record, _ = self.versions.pop(at)
            self.hidden.discard(at)
            at = record.base if record.base in self.hidden else None

    def record(self, room_id: str) -> RoomRecord:
        size = len(self.snapshot or b"") + sum(len(data) for _, data in self.log)
        return RoomRecord(
            room_id, self.name, self.language, self.created_at, self.updated_at, size, len(self.log)
        )


class MemoryStore:
    def __init__(self) -> None:
        self._rooms: dict[str, _Room] = {}
        self._version_ids = itertools.count(1)

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def is_ready(self) -> bool:
        return True

    def _new_room(self, room_id: str, name: str, language: str | None) -> _Room:
        now = datetime.now(UTC)
        room = _Room(name, language, now, now)
        self._rooms[room_id] = room
        return room

    def _room(self, room_id: str) -> _Room:
        try:
            return self._rooms[room_id]
        except KeyError:
            raise RoomMissing(f"room {room_id!r} does not exist") from None

    async def create_room(self, room_id: str, name: str, language: str | None) -> RoomRecord:
        if room_id in self._rooms:
            raise RoomExists(f"room {room_id!r} already exists")
        return self._new_room(room_id, name, language).record(room_id)

    async def ensure_room(self, room_id: str) -> RoomRecord:
        room = self._rooms.get(room_id) or self._new_room(room_id, room_id, None)
        return room.record(room_id)

    async def get_room(self, room_id: str) -> RoomRecord | None:
        room = self._rooms.get(room_id)
        return room.record(room_id) if room else None

    async def list_rooms(self) -> list[RoomRecord]:
        return [room.record(room_id) for room_id, room in sorted(self._rooms.items())]

    async def page_rooms(self, limit: int, after: str | None = None) -> list[RoomRecord]:
        def position(room_id: str) -> tuple[datetime, str]:
            return self._rooms[room_id].created_at, room_id

        newest = sorted(self._rooms, key=position, reverse=True)
        if after is not None:
            if after not in self._rooms:
                return []
            newest = [room_id for room_id in newest if position(room_id) < position(after)]
        return [self._rooms[room_id].record(room_id) for room_id in newest[:limit]]

    async def set_language(self, room_id: str, language: str | None) -> None:
        self._room(room_id).language = language

    async def rename_room(self, room_id: str, name: str) -> bool:
        room = self._rooms.get(room_id)
        if room is None:
            return False
        room.name = name
        return True

    async def delete_room(self, room_id: str) -> bool:
        return self._rooms.pop(room_id, None) is not None

    async def load(self, room_id: str) -> StoredLog:
        room = self._room(room_id)
        return StoredLog(
            room.snapshot,
            [data for _, data in room.log],
            room.last_seq,
            [seq for seq, _ in room.log],
        )

    async def last_seqs(self, room_ids: Sequence[str]) -> dict[str, int]:
        return {
            room_id: self._rooms[room_id].last_seq for room_id in room_ids if room_id in self._rooms
        }

    async def append(self, room_id: str, update: bytes) -> int:
        room = self._room(room_id)
        room.last_seq += 1
        room.log.append((room.last_seq, update))
        room.updated_at = datetime.now(UTC)
        return room.last_seq

    async def append_many(self, room_id: str, updates: list[bytes]) -> list[int]:
        return [await self.append(room_id, update) for update in updates]

    async def discard(self, room_id: str, seqs: list[int]) -> int:
        room = self._room(room_id)
        before = len(room.log)
        room.log = [(seq, data) for seq, data in room.log if seq not in seqs]
        return before - len(room.log)

    async def compact(
        self, room_id: str, snapshot: bytes, through_seq: int, keep: Sequence[int] = ()
    ) -> bool:
        room = self._room(room_id)
        if room.snapshot_seq >= through_seq:
            return False
        room.snapshot = snapshot
        room.snapshot_seq = through_seq
        room.log = [(seq, data) for seq, data in room.log if seq > through_seq or seq in keep]
        return True

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
        room = self._room(room_id)
        if base is not None and base not in room.versions:
            raise BaseVersionGone(f"version {base} of room {room_id!r} is gone")
        version_id = next(self._version_ids)
        made = created_at or datetime.now(UTC)
        record = VersionRecord(
            version_id, room_id, made, label, automatic, tuple(authors), len(state), base
        )
        room.versions[version_id] = (record, state)
        return record

    async def page_versions(
        self, room_id: str, limit: int, before: int | None = None
    ) -> list[VersionRecord]:
        room = self._rooms.get(room_id)
        if room is None:
            return []
        ids = sorted(
            (i for i in room.versions if (before is None or i < before) and i not in room.hidden),
            reverse=True,
        )
        return [room.versions[version_id][0] for version_id in ids[:limit]]

    async def get_version(self, room_id: str, version_id: int) -> VersionRecord | None:
        room = self._rooms.get(room_id)
        if room is None or version_id in room.hidden:
            return None
        found = room.versions.get(version_id)
        return found[0] if found is not None else None

    async def count_named_versions(self, room_id: str) -> int:
        room = self._rooms.get(room_id)
        if room is None:
            return 0
        return sum(
            1 for i, (r, _) in room.versions.items() if not r.automatic and i not in room.hidden
        )

    async def version_parts(self, room_id: str, version_id: int) -> list[bytes] | None:
        room = self._rooms.get(room_id)
        if room is None or version_id not in room.versions or version_id in room.hidden:
            return None
        parts: list[bytes] = []
        at: int | None = version_id
        while at is not None:
            record, data = room.versions[at]
            parts.append(data)
            at = record.base
        return parts[::-1]

    async def delete_version(self, room_id: str, version_id: int) -> bool:
        room = self._rooms.get(room_id)
        if room is None or version_id not in room.versions or version_id in room.hidden:
            return False
        room.remove_version(version_id)
        return True

    async def prune_versions(self, room_id: str, keep: int, older_than: datetime | None) -> int:
        room = self._rooms.get(room_id)
        if room is None:
            return 0
        automatic = sorted(
            (i for i, (r, _) in room.versions.items() if r.automatic and i not in room.hidden),
            reverse=True,
        )
        doomed = set(automatic[keep:])
        if older_than is not None:
            doomed.update(i for i in automatic if room.versions[i][0].created_at < older_than)
        for version_id in sorted(doomed, reverse=True):
            room.remove_version(version_id)
        return len(doomed)

    async def save_authorship(self, room_id: str, ranges: Sequence[AuthorRange]) -> None:
        room = self._rooms.get(room_id)
        if room is not None:
            room.authorship.update(((found.client, found.clock), found) for found in ranges)

    async def load_authorship(self, room_id: str) -> list[AuthorRange]:
        room = self._rooms.get(room_id)
        return [room.authorship[key] for key in sorted(room.authorship)] if room else []
