"""One room's place in its shared log, as this process follows it: which of the store's sequence
numbers the room holds, and the updates from other processes held back until they can be applied
in the store's order.

The store numbers a room's updates in commit order, and an update depends only on updates
numbered lower (its writer had them before it wrote). So a room applies what others publish in
that order, skipping no number: an update that arrives before one numbered lower waits for it.
That one is usually on its way (two processes published at once); if it never comes (its process
died before publishing it, or Redis dropped it), the owner reads the store: a catch-up. While a
catch-up reads, every update waits; afterwards only those the read did not bring are applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class _Held:
    # Its lowest number; for an update without numbers, that of what arrived before it.
    position: int
    arrival: int
    seqs: tuple[int, ...]
    update: bytes


class RoomFeed:
    def __init__(self, through: int) -> None:
        self.through = through  # every update the store numbered up to here is in the room
        self.newest = through  # the highest number the store is known to have given out
        self.catching_up = False  # a read of the store is under way; what arrives waits for it
        self.read_again = False  # more went missing while it read: read once more after it
        self._ahead: set[int] = set()  # numbers past `through` that are in the room
        self._held: list[_Held] = []
        self._arrivals = 0

    @property
    def missing(self) -> int | None:
        """The lowest number the store gave out that the room does not hold, if any."""
        return self.through + 1 if self.newest > self.through else None

    @property
    def held(self) -> int:
        return len(self._held)

    def applied(self, seqs: Iterable[int]) -> None:
        """These updates are in the room (this process appended them, or applied them)."""
        for seq in seqs:
            if seq > self.through:
                self._ahead.add(seq)
                self.newest = max(self.newest, seq)
        self._advance()

    def stored(self, newest: int) -> None:
        """The store has given out numbers up to `newest` (a look at the store itself)."""
        self.newest = max(self.newest, newest)

    def offer(self, seqs: tuple[int, ...], update: bytes) -> list[bytes]:
        """An update another process published: the updates to apply now, in order (it and the
        held ones it frees), possibly none. Without numbers (accepted during a database outage)
        it keeps its place behind whatever arrived before it."""
        if seqs:
            self.newest = max(self.newest, *seqs)
            position = min(seqs)
        else:
            position = max((held.position for held in self._held), default=self.through)
        self._arrivals += 1
        self._held.append(_Held(position, self._arrivals, seqs, update))
        return self.release()

    def caught_up(self, through: int | None) -> list[bytes]:
        """The catch-up's read is over: the room now holds every update numbered up to
        `through`. The held updates to apply, in order; those the read brought are dropped.

        `through` None: the read failed, and every held update is applied anyway, in order (late
        rather than never); what is still missing stays missing, for the next read."""
        self.catching_up = False
        if through is None:
            return self.release(whatever_is_missing=True)
        if through > self.through:
            self.through = through
            self._ahead = {seq for seq in self._ahead if seq > through}
            self._advance()
        self.newest = max(self.newest, through)
        return self.release()

    def release(self, *, whatever_is_missing: bool = False) -> list[bytes]:
        """The held updates that can be applied now, in order."""
        if self.catching_up:
            return []
        self._held.sort(key=lambda held: (held.position, held.arrival))
        ready: list[bytes] = []
        for index, held in enumerate(self._held):
            if held.seqs and held.position > self.through + 1 and not whatever_is_missing:
                self._held = self._held[index:]  # it, and all after it, wait for the hole
                return ready
            if not held.seqs or not self._holds_all(held.seqs):
                ready.append(held.update)
            self.applied(held.seqs)
        self._held = []
        return ready

    def _holds_all(self, seqs: tuple[int, ...]) -> bool:
        return all(seq <= self.through or seq in self._ahead for seq in seqs)

    def _advance(self) -> None:
        while self.through + 1 in self._ahead:
            self.through += 1
            self._ahead.remove(self.through)
