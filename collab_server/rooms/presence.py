"""Who is in a room: the awareness states (names, cursors), which connection owns each, and the
bounds that keep them small.

Bounds: each state, each connection and the room are bounded in bytes and (but the state) in
entries; a connection that would go over one is refused (`ProtocolError`, 4413 or 4429) and
nothing it sent in that message is kept. A newcomer's greeting holds the room's states, so it is
bounded too: at most `max_room_bytes` of JSON plus 19 bytes of varints an entry.

Ownership: the first connection to announce a client id owns it until it leaves or its state
goes stale; no other connection may change or remove it. Stock clients send other clients' ids
all the time (y-websocket echoes every change it hears; a client that timed a peer out sends its
removal), so a foreign entry is dropped, not refused; if it is newer, it is kept as a claim. When
the owner leaves or goes stale, the newest claim takes over at once instead of a removal: a
client that reconnected before the server saw its old socket die reappears seamlessly, while
a live owner's state cannot be overwritten. States from other server processes (`peer` None) are
owned by none here and may change anything, as before.

Staleness: clients renew their state every 15 s and drop another's after 30 s without a renewal
(y-protocols); a state not renewed for `timeout_seconds` is not sent to newcomers, and the next
call that returns entries to relay removes it (or hands it to a claim) and includes the removal.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from collab_server.protocol import (
    AwarenessEntry,
    ProtocolError,
    decode_awareness,
    encode_awareness,
    encode_awareness_message,
)
from collab_server.protocol.awareness import (
    MAX_STATE_BYTES,
    NULL_STATE,
    PRESENCE_FULL,
    STATE_TOO_LARGE,
)
from collab_server.rooms.peer import Peer

logger = logging.getLogger(__name__)

# A y-websocket client announces one client id; a few more for clients that share one socket
# between documents.
MAX_PEER_ENTRIES = 32
# Four maximal states, or some 800 of our editor's.
MAX_PEER_BYTES = 256 * 1024
# Twenty times a large mob-programming session, and still a class watching one room.
MAX_ROOM_ENTRIES = 1000
# 4 KiB for each of those people (ours use 300 bytes); the bound on a newcomer's greeting.
MAX_ROOM_BYTES = 4 * 1024 * 1024
# y-protocols clients renew every 15 s and drop a peer's state after 30 s without a renewal.
STATE_TIMEOUT_SECONDS = 30.0


_UNREAD = object()  # a state's `user.name` not looked for yet


@dataclass(slots=True)
class _State:
    entry: AwarenessEntry
    size: int  # bytes of its JSON
    renewed: float  # when its clock last went up
    owner: Peer | None  # the connection that announced it (or claims it); None: another process
    name: object = _UNREAD  # `user.name`, read once (each stored batch asks for it)

    def user_name(self) -> str | None:
        if self.name is _UNREAD:
            self.name = _user_name(self.entry.state)
        return self.name if isinstance(self.name, str) else None


@dataclass(slots=True)
class _Holdings:
    """What one connection holds: the client ids it owns and its claims on others'."""

    owned: set[int] = field(default_factory=set)
    claims: dict[int, _State] = field(default_factory=dict)
    size: int = 0

    @property
    def count(self) -> int:
        return len(self.owned) + len(self.claims)


class Presence:
    """The latest awareness state of each client, following the y-protocols clock rules."""

    def __init__(
        self,
        *,
        room_id: str = "?",
        max_state_bytes: int = MAX_STATE_BYTES,
        max_peer_entries: int = MAX_PEER_ENTRIES,
        max_peer_bytes: int = MAX_PEER_BYTES,
        max_room_entries: int = MAX_ROOM_ENTRIES,
        max_room_bytes: int = MAX_ROOM_BYTES,
        timeout_seconds: float = STATE_TIMEOUT_SECONDS,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.room_id = room_id
        self.max_state_bytes = max_state_bytes
        self.max_peer_entries = max_peer_entries
        self.max_peer_bytes = max_peer_bytes
        self.max_room_entries = max_room_entries
        self.max_room_bytes = max_room_bytes
        self.timeout_seconds = timeout_seconds
        self._now = now
        self._states: dict[int, _State] = {}
        self._size = 0  # bytes of all states
        self._holdings: dict[Peer, _Holdings] = {}
        self._claimants: dict[int, set[Peer]] = {}  # client id -> connections that claim it
        self._next_sweep = 0.0  # no state goes stale before this
        self._unsent: list[AwarenessEntry] = []  # removals and takeovers not yet returned
        self._greeting: bytes | None = None  # the states as one message, until one changes

    def __len__(self) -> int:
        return len(self.entries())

    def entries(self, *, local_only: bool = False) -> list[AwarenessEntry]:
        """The current states (not stale ones), e.g. for a newcomer; `local_only`: those of this
        process's own connections."""
        fresh_after = self._now() - self.timeout_seconds
        return [
            state.entry
            for state in self._states.values()
            if state.renewed > fresh_after and not (local_only and state.owner is None)
        ]

    def names_of(self, peer: Peer) -> list[str]:
        """The names a connection's clients announce (`user.name`, as the editor page and
        y-codemirror.next set it)."""
        holdings = self._holdings.get(peer)
        names = []
        for client_id in sorted(holdings.owned) if holdings is not None else ():
            state = self._states.get(client_id)
            name = state.user_name() if state is not None else None
            if name:
                names.append(name)
        return names

    def greeting(self) -> bytes | None:
        """Every current state as one awareness message for a newcomer (None: nobody), built
        once per change: a burst of joins (a reconnect storm, a flood) costs one encoding, not
        megabytes each. Call `expire` first, so that no state in it is stale."""
        if self._greeting is None and self._states:
            self._greeting = encode_awareness_message(encode_awareness(self.entries()))
        return self._greeting

    def decode(self, payload: bytes) -> list[AwarenessEntry]:
        """Decode an awareness payload within this room's bounds (a genuine echo carries at most
        what the room holds)."""
        return decode_awareness(
            payload, max_state_bytes=self.max_state_bytes, max_entries=2 * self.max_room_entries
        )

    # -- changes ------------------------------------------------------------------------------

    def apply(self, entries: list[AwarenessEntry], peer: Peer | None) -> list[AwarenessEntry]:
        """Apply entries sent by `peer` (None: relayed by another server process); return what
        to relay. Raise `ProtocolError` (and change nothing of `peer`'s) over a bound."""
        if peer is None:
            return self._apply_remote(entries)
        self._sweep()
        now = self._now()
        changes: dict[int, _State | None] = {}  # client id -> its new state, None: removed
        claims: dict[int, _State | None] = {}  # client id -> peer's new claim, None: withdrawn
        accepted = []
        for entry in entries:
            current = changes.get(entry.client_id, self._states.get(entry.client_id))
            if current is not None and not _supersedes(entry, current.entry):
                continue  # old news, or an echo of what we have
            if current is None and entry.removed:
                continue
            new = None if entry.removed else _State(entry, self._size_of(entry), now, peer)
            if current is not None and current.owner is not peer:
                claims[entry.client_id] = new
                continue
            changes[entry.client_id] = new
            accepted.append(entry)
        holdings = self._holdings.setdefault(peer, _Holdings())
        self._check_bounds(peer, holdings, changes)
        for client_id, new in changes.items():
            self._release(client_id)
            if new is None:
                self._drop_claims(client_id)  # the client said it left: nobody takes over
            else:
                self._put(client_id, new)
        for client_id, claim in claims.items():
            self._claim(peer, holdings, client_id, claim)
        if not holdings.count:
            del self._holdings[peer]
        return self._take_unsent() + accepted

    def remove_peer(self, peer: Peer) -> list[AwarenessEntry]:
        """Forget what `peer` announced and claimed; return what to relay: its clients'
        removals, or the claims that take them over."""
        self._sweep()
        holdings = self._holdings.pop(peer, None)
        if holdings is not None:
            for client_id in holdings.claims:
                self._claimants[client_id].discard(peer)
            for client_id in list(holdings.owned):
                self._vacate(client_id)
        return self._take_unsent()

    def expire(self) -> list[AwarenessEntry]:
        """Remove the states not renewed in time (or hand them to claims); return what to relay.
        For a room to call now and then, and before it greets a newcomer."""
        self._sweep()
        return self._take_unsent()

    def _apply_remote(self, entries: list[AwarenessEntry]) -> list[AwarenessEntry]:
        now = self._now()
        accepted = []
        for entry in entries:
            current = self._states.get(entry.client_id)
            if current is not None and not _supersedes(entry, current.entry):
                continue
            if entry.removed:
                if current is None:
                    continue
                self._release(entry.client_id)
            else:
                size = self._size_of(entry)
                grows = size - (current.size if current else 0)
                if (
                    size > self.max_state_bytes
                    or (current is None and len(self._states) >= self.max_room_entries)
                    or (grows > 0 and self._size + grows > self.max_room_bytes)
                ):
                    logger.warning(
                        "room %s: presence of client %d from another process is over the "
                        "room's bounds; dropped",
                        self.room_id,
                        entry.client_id,
                    )
                    continue
                # The client is now (also) connected elsewhere: its state is no longer ours to
                # remove when an old connection of it here ends.
                self._release(entry.client_id)
                self._put(entry.client_id, _State(entry, size, now, None))
            self._drop_claims(entry.client_id)
            accepted.append(entry)
        return accepted

    # -- bounds -------------------------------------------------------------------------------

    def _size_of(self, entry: AwarenessEntry) -> int:
        size = len(entry.state.encode())
        if size > self.max_state_bytes:
            raise ProtocolError(
                f"awareness state of {size} bytes (at most {self.max_state_bytes})",
                STATE_TOO_LARGE,
            )
        return size

    def _check_bounds(
        self, peer: Peer, holdings: _Holdings, changes: dict[int, _State | None]
    ) -> None:
        """Raise if `changes` would take the connection or the room over a bound (a room or a
        connection already over one, say after a bound was lowered, may still shrink)."""
        count = room_count = size = 0
        for client_id, new in changes.items():
            old = self._states.get(client_id)
            count += (new is not None) - (old is not None)
            size += (new.size if new else 0) - (old.size if old else 0)
        room_count, room_size = len(self._states) + count, self._size + size
        count, size = holdings.count + count, holdings.size + size
        if (count > self.max_peer_entries and count > holdings.count) or (
            size > self.max_peer_bytes and size > holdings.size
        ):
            raise ProtocolError(
                f"more presence than one connection may hold ({self.max_peer_entries} clients, "
                f"{self.max_peer_bytes} bytes)",
                PRESENCE_FULL,
            )
        if (room_count > self.max_room_entries and room_count > len(self._states)) or (
            room_size > self.max_room_bytes and room_size > self._size
        ):
            raise ProtocolError(
                f"the room holds all the presence it may ({self.max_room_entries} clients, "
                f"{self.max_room_bytes} bytes)",
                PRESENCE_FULL,
            )

    # -- ownership ----------------------------------------------------------------------------

    def _claim(self, peer: Peer, holdings: _Holdings, client_id: int, claim: _State | None) -> None:
        """Keep (or withdraw) `peer`'s newer state for a client id another connection owns."""
        old = holdings.claims.pop(client_id, None)
        if old is not None:
            holdings.size -= old.size
            self._claimants[client_id].discard(peer)
        if claim is None:
            return
        if (
            holdings.count + 1 > self.max_peer_entries
            or holdings.size + claim.size > self.max_peer_bytes
        ):
            logger.info(
                "room %s peer %s: no room for its claim on client %d; dropped",
                self.room_id,
                peer.id,
                client_id,
            )
            return
        if old is None:
            logger.info(
                "room %s peer %s: client %d belongs to another connection; kept as a claim",
                self.room_id,
                peer.id,
                client_id,
            )
        holdings.claims[client_id] = claim
        holdings.size += claim.size
        self._claimants.setdefault(client_id, set()).add(peer)

    def _vacate(self, client_id: int) -> None:
        """The owner of `client_id` left or went stale: the newest live claim takes over, else
        the client is removed."""
        state = self._states[client_id]
        self._release(client_id)
        successor = self._best_claim(client_id, state)
        if successor is not None:
            claimant = successor.owner
            assert claimant is not None
            holdings = self._holdings[claimant]
            del holdings.claims[client_id]
            holdings.owned.add(client_id)
            self._claimants[client_id].discard(claimant)
            self._put(client_id, successor)
            self._unsent.append(successor.entry)
            logger.info(
                "room %s peer %s: took over client %d", self.room_id, claimant.id, client_id
            )
        elif state.owner is not None:
            self._unsent.append(AwarenessEntry(client_id, state.entry.clock, NULL_STATE))
        self._drop_claims(client_id)

    def _best_claim(self, client_id: int, vacated: _State) -> _State | None:
        if vacated.owner is None:
            return None  # another process's client: it removes it when it leaves
        fresh_after = self._now() - self.timeout_seconds
        candidates = [
            claim
            for claimant in self._claimants.get(client_id, ())
            if not claimant.closing
            and (claim := self._holdings[claimant].claims[client_id]).renewed > fresh_after
            and claim.entry.clock > vacated.entry.clock
            and self._size + claim.size <= self.max_room_bytes
        ]
        return max(candidates, key=lambda claim: (claim.entry.clock, claim.renewed), default=None)

    def _drop_claims(self, client_id: int) -> None:
        for claimant in self._claimants.pop(client_id, ()):
            holdings = self._holdings[claimant]
            claim = holdings.claims.pop(client_id)
            holdings.size -= claim.size
            if not holdings.count:
                del self._holdings[claimant]

    # -- bookkeeping --------------------------------------------------------------------------

    def _put(self, client_id: int, state: _State) -> None:
        self._states[client_id] = state
        self._greeting = None
        self._size += state.size
        self._next_sweep = min(self._next_sweep, state.renewed + self.timeout_seconds)
        if state.owner is not None:
            holdings = self._holdings.setdefault(state.owner, _Holdings())
            holdings.owned.add(client_id)
            holdings.size += state.size

    def _release(self, client_id: int) -> None:
        """Take a client's state out, and out of its owner's holdings."""
        state = self._states.pop(client_id, None)
        if state is None:
            return
        self._greeting = None
        self._size -= state.size
        holdings = self._holdings.get(state.owner) if state.owner is not None else None
        if holdings is not None:
            holdings.owned.discard(client_id)
            holdings.size -= state.size

    def _sweep(self) -> None:
        """Vacate the states not renewed for `timeout_seconds` (at most once a timeout goes by
        for the room's oldest state, so that the hot path stays O(1))."""
        now = self._now()
        if now < self._next_sweep:
            return
        stale_at = now - self.timeout_seconds
        for client_id in [c for c, state in self._states.items() if state.renewed <= stale_at]:
            self._vacate(client_id)
        oldest = min((state.renewed for state in self._states.values()), default=now)
        self._next_sweep = oldest + self.timeout_seconds

    def _take_unsent(self) -> list[AwarenessEntry]:
        unsent, self._unsent = self._unsent, []
        return unsent


def _supersedes(entry: AwarenessEntry, current: AwarenessEntry) -> bool:
    """The y-protocols rule: a higher clock wins; a removal also wins at the same clock."""
    return entry.clock > current.clock or (entry.clock == current.clock and entry.removed)


def _user_name(state: str) -> str | None:
    try:
        parsed = json.loads(state)
    except ValueError:
        return None
    user = parsed.get("user") if isinstance(parsed, dict) else None
    name = user.get("name") if isinstance(user, dict) else None
    return name if isinstance(name, str) else None
