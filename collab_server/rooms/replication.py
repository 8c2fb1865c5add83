"""What the rooms of one process tell the other server processes, and hear from them.

`rooms/` knows only this interface. `cluster/` implements it over Redis; a process that is alone
uses `SingleProcess`, which tells nobody anything. The store stays the truth: what arrives here
only spares a process reading it back.
"""

from __future__ import annotations

from typing import Protocol

from collab_server.protocol import AwarenessEntry


class ReplicaListener(Protocol):
    """The side that keeps rooms (the registry) hears this from other processes."""

    def updates_from_elsewhere(self, room_id: str, updates: list[bytes]) -> None:
        """Another process stored these updates (so they are durable) in a room."""

    def awareness_from_elsewhere(self, room_id: str, entries: list[AwarenessEntry]) -> None:
        """Presence of clients connected to another process."""

    def local_awareness(self, room_id: str) -> list[AwarenessEntry]:
        """The presence of this process's clients in a room, which another process asked for."""

    def deleted_elsewhere(self, room_id: str) -> None:
        """Another process deleted the room."""

    def updates_missed(self, room_id: str | None) -> None:
        """Messages about the room (None: about any room) may have been lost: read the store."""


class Replication(Protocol):
    def listen(self, listener: ReplicaListener) -> None:
        """Whom to tell what arrives from other processes (set once, before rooms load)."""

    async def follow(self, room_id: str) -> None:
        """Start hearing about a room, before it is read from the store: what arrives is held
        until `loaded` (or dropped by `unfollow`)."""

    def loaded(self, room_id: str) -> None:
        """The room is in memory: deliver what was held, ask the others for their presence."""

    async def unfollow(self, room_id: str) -> None: ...

    def updates_stored(self, room_id: str, updates: list[bytes]) -> None:
        """Local updates are durable in the shared store: tell the others."""

    def awareness_changed(self, room_id: str, entries: list[AwarenessEntry]) -> None: ...

    def room_deleted(self, room_id: str) -> None: ...


class SingleProcess:
    """No other processes: nothing to tell, nothing to hear."""

    def listen(self, listener: ReplicaListener) -> None:
        pass

    async def follow(self, room_id: str) -> None:
        pass

    def loaded(self, room_id: str) -> None:
        pass

    async def unfollow(self, room_id: str) -> None:
        pass

    def updates_stored(self, room_id: str, updates: list[bytes]) -> None:
        pass

    def awareness_changed(self, room_id: str, entries: list[AwarenessEntry]) -> None:
        pass

    def room_deleted(self, room_id: str) -> None:
        pass
