"""Who is in a room: the awareness states (cursors, names) and which peer announced each."""

from __future__ import annotations

from collab_server.protocol import AwarenessEntry, ProtocolError
from collab_server.protocol.awareness import NULL_STATE
from collab_server.rooms.peer import Peer

# A y-websocket client announces one awareness client id; a few more are allowed for clients
# that share one socket between documents. More than this is abuse.
MAX_CLIENTS_PER_PEER = 32


class Presence:
    """The latest awareness entry of each client, following the y-protocols clock rules."""

    def __init__(self) -> None:
        self._entries: dict[int, AwarenessEntry] = {}
        self._owners: dict[int, Peer] = {}  # client id -> the peer that announced it

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[AwarenessEntry]:
        return list(self._entries.values())

    def apply(self, entries: list[AwarenessEntry], peer: Peer) -> list[AwarenessEntry]:
        """Apply entries sent by `peer`; return those that changed something, to relay."""
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
            else:
                if current is None and self._owned_by(peer) >= MAX_CLIENTS_PER_PEER:
                    raise ProtocolError("too many awareness clients on one connection")
                self._entries[entry.client_id] = entry
                self._owners[entry.client_id] = peer
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
