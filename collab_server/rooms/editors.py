"""Who edited a room since its last version, for the version's list of authors, and which
version that was.

The room tells this what it stores (and from which connection) and who leaves; names are read
from presence when a version is saved, or as an editor leaves (its presence goes with it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from collab_server.rooms.peer import Peer

# How a version names edits made over REST and by the server itself (a restore).
SERVER_AUTHOR = "server"
# Names come from what clients announce: a version keeps at most this many, each cut to this
# length (a room may hold thousands of presence states of up to 64 KiB).
MAX_AUTHORS = 100
MAX_AUTHOR_CHARS = 100

Names = Callable[[Peer], list[str]]  # the names a connection's clients announce


@dataclass(frozen=True, slots=True)
class LastVersion:
    """The version a room saved last in this process: the next is saved as a change to it."""

    id: int
    state_vector: bytes  # the document's then
    chain: int  # versions from the last one saved whole to this one


class Editors:
    def __init__(self, names_of: Names) -> None:
        self._names_of = names_of
        self._connected: set[Peer] = set()
        self._departed: set[str] = set()
        self._server = False
        self.first_edit: float | None = None  # time.monotonic() of the first since the version
        self.edits = 0  # batches stored in all
        self.last_version: LastVersion | None = None

    def stored(self, origin: Peer | None) -> None:
        """A batch from `origin` (None: REST, the server) was stored."""
        if origin is None:
            self._server = True
        else:
            self._connected.add(origin)
        if self.first_edit is None:
            self.first_edit = time.monotonic()
        self.edits += 1

    def left(self, peer: Peer) -> None:
        if peer in self._connected:
            self._connected.discard(peer)
            if len(self._departed) < MAX_AUTHORS:
                self._departed.update(_short(self._names_of(peer)))

    def names(self) -> list[str]:
        """The editors' names (at most `MAX_AUTHORS`), and `SERVER_AUTHOR` last if REST or the
        server edited."""
        names = set(self._departed)
        for peer in self._connected:
            if len(names) >= MAX_AUTHORS:
                break
            names.update(_short(self._names_of(peer)))
        return sorted(names)[:MAX_AUTHORS] + ([SERVER_AUTHOR] if self._server else [])

    def saved_elsewhere(self) -> None:
        """Another process saved a version that holds this document: the span before the next
        checkpoint starts afresh; the names stay for it."""
        self.first_edit = time.monotonic()

    def version_saved(self, through: int) -> None:
        """A version holds the document as it was after `through` edits: count afresh, unless
        edits came meanwhile (they wait for the next version, with their editors)."""
        if self.edits != through:
            return
        self._connected.clear()
        self._departed.clear()
        self._server = False
        self.first_edit = None


def _short(names: list[str]) -> list[str]:
    return [name[:MAX_AUTHOR_CHARS] for name in names]
