"""The rooms' lifecycle as the REST API sees it: create, list, look up, rename, switch language,
delete and recover. One entry point, so that no route reaches past the rooms layer into the
store, and a room's language is always changed in its document, where every editor follows."""

from __future__ import annotations

from dataclasses import dataclass

from collab_server.rooms.ids import is_valid_room_id
from collab_server.rooms.quarantine import QuarantineRecord
from collab_server.rooms.registry import RoomRegistry
from collab_server.rooms.snapshot import Recovery
from persistence import RoomRecord


@dataclass(frozen=True, slots=True)
class RoomStatus:
    """What only this process knows of a room: whether it is in memory here, with which
    language (its stored copy is written after) and how many peers, and whether it is
    quarantined."""

    in_memory: bool
    language: str | None
    peers: int
    quarantine: QuarantineRecord | None


class RoomCatalog:
    def __init__(self, registry: RoomRegistry) -> None:
        self._registry = registry
        self._store = registry.store

    async def create(
        self, room_id: str, name: str, language: str | None, opener: str | None
    ) -> None:
        """Create a room (one of `opener`'s openings; `RoomsBusy` if it has none left); raises
        `RoomExists`."""
        self._registry.gate.take(opener)
        await self._store.create_room(room_id, name, language)
        if language is not None:
            await self.set_language(room_id, language, opener=None)  # already paid for

    async def page(self, limit: int, after: str | None) -> list[RoomRecord]:
        """Up to `limit` rooms, in the store's order, after the room `after`."""
        return await self._store.page_rooms(limit, after=after)

    async def record(self, room_id: str) -> RoomRecord | None:
        """The stored room, or None (also for an id no room may have)."""
        if not is_valid_room_id(room_id):
            return None
        return await self._store.get_room(room_id)

    def status(self, room_id: str) -> RoomStatus:
        room = self._registry.loaded(room_id)
        return RoomStatus(
            in_memory=room is not None,
            language=room.language if room is not None else None,
            peers=len(room.peers) if room is not None else 0,
            quarantine=self._registry.quarantine.get(room_id),
        )

    async def rename(self, room_id: str, name: str) -> bool:
        """False if there is no such room."""
        return await self._store.rename_room(room_id, name)

    async def set_language(self, room_id: str, language: str, *, opener: str | None) -> None:
        """Switch the room's language in its document (loading it: one of `opener`'s
        openings); raises `RoomMissing`."""
        async with self._registry.lease(room_id, create=False, opener=opener) as room:
            await room.set_language(language)

    async def delete(self, room_id: str) -> bool:
        """Delete a room and its history, closing its peers; False if it did not exist."""
        return await self._registry.delete(room_id)

    async def recover(self, room_id: str, *, dry_run: bool) -> Recovery:
        """Rebuild a quarantined room without what cannot be replayed (`dry_run`: only say
        what would be dropped)."""
        return await self._registry.recover(room_id, dry_run=dry_run)
