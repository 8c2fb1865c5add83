"""Who is in a room: the awareness states (cursors, names) and which peer announced each."""

from __future__ import annotations

import time

from collab_server.protocol import AwarenessEntry, ProtocolError
from collab_server.protocol.awareness import NULL_STATE
from collab_server.rooms.peer import Peer

# A y-websocket client announces one awareness client id; a few more are allowed for clients
# that share one socket between documents. More than this is abuse.
MAX_CLIENTS_PER_PEER = 32
# Clients renew their state every 15 s; one announced through another server process and not
# renewed for this long belongs to a process that went away (y-protocols times out at 30 s).
REMOTE_TIMEOUT_SECONDS = 35.0


class Presence:
    """The latest awareness entry of each client, following the y-protocols clock rules."""

    def __init__(self) -> None:
        self._entries: dict[int, AwarenessEntry] = {}
        self._owners: dict[int, Peer] = {}  # client id -> the local peer that announced it
        self._remote_seen: dict[int, float] = {}  # client id -> when another process last did

    def __len__(self) -> int:
        self._forget_silent_remotes()
        return len(self._entries)

    def entries(self, *, local_only: bool = False) -> list[AwarenessEntry]:
        self._forget_silent_remotes()
        if local_only:
            return [self._entries[client_id] for client_id in self._owners]
        return list(self._entries.values())

    def _forget_silent_remotes(self) -> None:
        if not self._remote_seen:
            return
        limit = time.monotonic() - REMOTE_TIMEOUT_SECONDS
        for client_id in [c for c, seen in self._remote_seen.items() if seen < limit]:
            del self._remote_seen[client_id]
            self._entries.pop(client_id, None)

    def apply(self, entries: list[AwarenessEntry], peer: Peer | None) -> list[AwarenessEntry]:
        """Apply entries sent by `peer` (None: relayed by another server process); return those
        that changed something, to relay."""
        accepted = []
        for entry in entries:
            current = self._entries.get(entry.client_id)
            if current is not None and entry.clock < current.clock:
                continue
            if current is not None and entry.clock == current.clock and not entry.removed:
                continue
            if entry.removed:
                if current is None:
                    continue
                # Forget the client entirely, so that a reconnect that re-sends an old clock
                # is accepted here and newcomers see the client again.
                del self._entries[entry.client_id]
                self._owners.pop(entry.client_id, None)
                self._remote_seen.pop(entry.client_id, None)
            elif peer is None:
                # The client is now (also) connected elsewhere: its state is no longer ours to
                # remove when an old connection of it here ends.
                self._entries[entry.client_id] = entry
                self._owners.pop(entry.client_id, None)
                self._remote_seen[entry.client_id] = time.monotonic()
            else:
                if current is None and self._owned_by(peer) >= MAX_CLIENTS_PER_PEER:
                    raise ProtocolError("too many awareness clients on one connection")
                self._entries[entry.client_id] = entry
                self._owners[entry.client_id] = peer
                self._remote_seen.pop(entry.client_id, None)
            accepted.append(entry)
        return accepted

    def _owned_by(self, peer: Peer) -> int:
        return sum(1 for owner in self._owners.values() if owner is peer)

    def remove_peer(self, peer: Peer) -> list[AwarenessEntry]:
        """Forget the clients `peer` announced; return their removal entries, to relay."""
        gone = [client_id for client_id, owner in self._owners.items() if owner is peer]
        removals = []
        for client_id in gone:
            entry = self._entries.pop(client_id)
            del self._owners[client_id]
            removals.append(AwarenessEntry(client_id, entry.clock, NULL_STATE))
        return removals
