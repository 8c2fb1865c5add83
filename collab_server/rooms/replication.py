"""What the rooms of one process tell the other server processes, and hear from them.

`rooms/` knows only this interface. `cluster/` implements it over Redis; a process that is alone
uses `SingleProcess`, which tells nobody anything. The store stays the truth: what arrives here
only spares a process reading it back, and the replication decides when a room must read it
(`updates_missed`, answered by `Replication.caught_up`).
"""

from __future__ import annotations

from typing import Protocol

from collab_server.protocol import AwarenessEntry


class ReplicaListener(Protocol):
    """The side that keeps rooms (the registry) hears this from other processes."""

    def updates_from_elsewhere(self, room_id: str, updates: list[bytes]) -> None:
        """Other processes stored these updates (so they are durable) in a room: apply them in
        this order, which is the store's."""

    def awareness_from_elsewhere(self, room_id: str, entries: list[AwarenessEntry]) -> None:
        """Presence of clients connected to another process."""

    def local_awareness(self, room_id: str) -> list[AwarenessEntry]:
        """The presence of this process's clients in a room, which another process asked for."""

    def deleted_elsewhere(self, room_id: str) -> None:
        """Another process deleted the room."""

    def updates_missed(self, room_id: str) -> None:
        """The room lacks updates the store has: read them, then answer with
        `Replication.caught_up` (always, once, whatever happened)."""

    async def last_seqs(self, room_ids: list[str]) -> dict[str, int]:
        """The store's newest sequence number of each room (`Store.last_seqs`)."""


class Replication(Protocol):
    def listen(self, listener: ReplicaListener, *, check_seconds: float) -> None:
        """Whom to tell what arrives from other processes (set once, before rooms load), and
        how often to compare the loaded rooms with the store."""

    async def follow(self, room_id: str) -> None:
        """Start hearing about a room, before it is read from the store: what arrives is held
        until `loaded` (or dropped by `unfollow`)."""

    def loaded(self, room_id: str) -> None:
        """The room is in memory: deliver what was held, ask the others for their presence."""

    async def unfollow(self, room_id: str) -> None: ...

    def updates_stored(self, room_id: str, merged: bytes, seqs: list[int]) -> None:
        """Local updates, merged into one, are in the shared store, numbered `seqs` (`BUFFERED`
        in a database outage): tell the others."""

    def caught_up(self, room_id: str, through: int | None) -> None:
        """The room read what it missed: it holds every update numbered up to `through` (None:
        the read failed, or the room is gone)."""

    def awareness_changed(self, room_id: str, entries: list[AwarenessEntry]) -> None: ...

    def room_deleted(self, room_id: str) -> None: ...


class SingleProcess:
    """No other processes: nothing to tell, nothing to hear."""

    def listen(self, listener: ReplicaListener, *, check_seconds: float) -> None:
        pass

    async def follow(self, room_id: str) -> None:
        pass

    def loaded(self, room_id: str) -> None:
        pass

    async def unfollow(self, room_id: str) -> None:
        pass

    def updates_stored(self, room_id: str, merged: bytes, seqs: list[int]) -> None:
        pass

    def caught_up(self, room_id: str, through: int | None) -> None:
        pass

    def awareness_changed(self, room_id: str, entries: list[AwarenessEntry]) -> None:
        pass

    def room_deleted(self, room_id: str) -> None:
        pass
