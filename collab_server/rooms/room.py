"""A room: one CRDT document, the peers editing it, their presence, and the fan-out between them.

Invariant: the in-memory document only ever holds updates the store has already accepted. An
update is checked, appended durably, and only then applied and relayed, so whatever any client
(or a REST reader) has seen survives a crash of this process. (The one exception is a PostgreSQL
outage, when the store accepts updates into a bounded memory buffer: see docs/postgres.md.)
"""

from __future__ import annotations

import logging

from pycrdt import MapEvent, Text, get_state, merge_updates

from collab_server.protocol import (
    AuthMessage,
    AwarenessEntry,
    AwarenessMessage,
    CloseCode,
    Message,
    ProtocolError,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_awareness,
    encode_awareness,
    encode_awareness_message,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)
from collab_server.rooms.document import LANGUAGE_KEY, Document, meta_of, new_document, text_of
from collab_server.rooms.peer import OutboundUpdate, Peer
from collab_server.rooms.presence import Presence
from collab_server.rooms.text_edit import replacement_update
from persistence import RoomMissing, Store, StoredLog

logger = logging.getLogger(__name__)

# An update that carries nothing: no structs, an empty delete set.
EMPTY_UPDATE = b"\x00\x00"


class RoomDeleted(Exception):
    """The room was deleted while someone was still writing to it."""


class RoomListener:
    """What the owner of a room hears about it (the registry: compaction, other processes)."""

    def update_stored(self, room: Room, update: bytes, rows: int, size: int) -> None:
        """Local updates (`rows` of them, `size` bytes, merged into `update`) were stored,
        applied and relayed."""

    def language_changed(self, room: Room) -> None:
        """The document's `meta` map changed (from any source): its language may have."""

    def awareness_changed(self, room: Room, entries: list[AwarenessEntry]) -> None:
        """Local clients' awareness changed (states, or removals when they leave)."""

    def room_missing(self, room: Room) -> None:
        """The store no longer has the room: it was deleted, perhaps by another process."""


class Room:
    def __init__(
        self,
        room_id: str,
        doc: Document,
        store: Store,
        *,
        log_rows: int = 0,
        log_bytes: int = 0,
        listener: RoomListener | None = None,
    ) -> None:
        self.id = room_id
        self.doc = doc
        self.peers: set[Peer] = set()
        self.deleted = False
        self.leases = 0  # holders that keep the room in memory (kept by the registry)
        self.log_rows = log_rows  # updates in the store's log since the last snapshot
        self.log_bytes = log_bytes
        self._store = store
        self._presence = Presence()
        self._listener = listener or RoomListener()
        # The language is read again only after a transaction changed the meta map (a Map.get
        # per keystroke cost ~10 % of the CPU), and the listener hears of such changes.
        self._meta = meta_of(doc)
        self._meta.observe(self._meta_changed)
        self._language_stale = True
        self._language: str | None = None

    def __repr__(self) -> str:
        return f"<Room {self.id} with {len(self.peers)} peers>"

    # -- peers --------------------------------------------------------------------------------

    def join(self, peer: Peer) -> None:
        """Add a peer and greet it: our state vector, then every current awareness state."""
        self.peers.add(peer)
        peer.send(encode_sync_step1(self.doc.get_state()))
        if len(self._presence):
            peer.send(self._awareness_frame(self._presence.entries()))
        logger.info("room %s peer %s joined (%d peers)", self.id, peer.id, len(self.peers))

    def leave(self, peer: Peer) -> None:
        """Remove a peer and tell the others that its cursors are gone."""
        self.peers.discard(peer)
        removals = self._presence.remove_peer(peer)
        if removals:
            self._broadcast(self._awareness_frame(removals))
            self._listener.awareness_changed(self, removals)
        logger.info("room %s peer %s left (%d peers)", self.id, peer.id, len(self.peers))

    def close_peers(self, code: int, reason: str) -> None:
        for peer in list(self.peers):
            peer.close(code, reason)

    # -- messages -----------------------------------------------------------------------------

    def receive(self, peer: Peer, message: Message) -> None:
        """Handle one decoded message from `peer`; raise `ProtocolError` if it is unacceptable.

        Updates are not handled here: they are stored in batches by `apply_updates` (the
        connection's intake), so that reading does not wait for each commit.
        """
        if isinstance(message, SyncUpdate | SyncStep2):
            raise TypeError("updates go through Room.apply_updates")
        if isinstance(message, AwarenessMessage):
            self._apply_awareness(peer, decode_awareness(message.payload))
        elif isinstance(message, SyncStep1):
            peer.send(encode_sync_step2(self.update_since(message.state_vector)))
        elif isinstance(message, QueryAwareness):
            if len(self._presence):
                peer.send(self._awareness_frame(self._presence.entries()))
        elif isinstance(message, AuthMessage):
            # Clients never send these to a server; the reference server ignores them too.
            logger.debug("room %s peer %s sent an auth message; ignored", self.id, peer.id)

    def full_update(self) -> bytes:
        """The whole document as one update (what Y.encodeStateAsUpdate gives)."""
        return self.doc.get_update()

    def update_since(self, state_vector: bytes) -> bytes:
        """Everything the document holds that a client with `state_vector` lacks."""
        try:
            return self.doc.get_update(state_vector)
        except ValueError as error:
            raise ProtocolError(f"invalid state vector: {error}") from error

    async def apply_update(self, update: bytes, origin: Peer | None) -> None:
        """Store an update, then apply it and relay it to every peer but its origin."""
        self.check_update(update)
        await self.apply_updates([update], origin)

    @staticmethod
    def check_update(update: bytes) -> None:
        """Raise `ProtocolError` unless yrs can decode the update."""
        try:
            get_state(update)  # decodes the whole update: yrs accepts exactly what decodes
        except ValueError as error:
            raise ProtocolError(f"update rejected: {error}", CloseCode.UPDATE_REJECTED) from error

    async def apply_updates(self, updates: list[bytes], origin: Peer | None) -> None:
        """Store checked updates (sharing the store's batches), then apply and relay them in
        order. Empty updates are skipped."""
        updates = [update for update in updates if update != EMPTY_UPDATE]
        if not updates:
            return
        if self.deleted:
            raise RoomDeleted(self.id)
        try:
            await self._store.append_many(self.id, updates)
        except RoomMissing as error:
            self._listener.room_missing(self)
            raise RoomDeleted(self.id) from error
        # One message for the whole batch: peers' queues grow by one item, not by the batch.
        update = updates[0] if len(updates) == 1 else merge_updates(*updates)
        size = sum(map(len, updates))
        self._apply_and_relay(update, origin, stored_rows=len(updates), stored_bytes=size)
        self._listener.update_stored(self, update, len(updates), size)

    def _apply_and_relay(
        self,
        update: bytes,
        origin: Peer | None,
        stored_rows: int = 1,
        stored_bytes: int | None = None,
    ) -> None:
        self.doc.apply_update(update)
        outbound = OutboundUpdate(update, encode_update(update))
        for peer in self.peers:
            if peer is not origin:
                peer.send_update(outbound)
        self.log_rows += stored_rows
        self.log_bytes += len(update) if stored_bytes is None else stored_bytes

    def _apply_awareness(self, peer: Peer, entries: list[AwarenessEntry]) -> None:
        accepted = self._presence.apply(entries, peer)
        if not accepted:
            return
        # Echo to the sender too: the stock client drops a socket that hears nothing for 30 s.
        self._broadcast(self._awareness_frame(accepted))
        self._listener.awareness_changed(self, accepted)

    # -- other server processes ---------------------------------------------------------------

    def apply_remote_update(self, update: bytes) -> None:
        """An update another process stored (so it is durable already): apply it, relay it."""
        try:
            self._apply_and_relay(update, origin=None)
        except ValueError:
            logger.exception("room %s: an update from another process does not apply", self.id)

    def apply_remote_awareness(self, entries: list[AwarenessEntry]) -> None:
        accepted = self._presence.apply(entries, None)
        if accepted:
            self._broadcast(self._awareness_frame(accepted))

    def local_awareness(self) -> list[AwarenessEntry]:
        """The states of this process's own clients, for a process that just loaded the room."""
        return self._presence.entries(local_only=True)

    def catch_up(self, log: StoredLog) -> None:
        """Apply whatever the store has that this copy lacks (missed messages from others)."""
        before = self.doc.get_state()
        with self.doc.transaction():
            for update in [log.snapshot, *log.updates]:
                if update is not None:
                    self.doc.apply_update(update)
        missing = self.doc.get_update(before)
        outbound = OutboundUpdate(missing, encode_update(missing))
        for peer in self.peers:
            peer.send_update(outbound)

    def _broadcast(self, frame: bytes) -> None:
        for peer in self.peers:
            peer.send(frame)

    @staticmethod
    def _awareness_frame(entries: list[AwarenessEntry]) -> bytes:
        return encode_awareness_message(encode_awareness(entries))

    # -- content ------------------------------------------------------------------------------

    def text(self, name: str) -> Text:
        """The shared text `name` (y-codemirror.next uses "codemirror")."""
        return text_of(self.doc, name)

    @property
    def language(self) -> str | None:
        if self._language_stale:
            value = self._meta.get(LANGUAGE_KEY)
            self._language = value if isinstance(value, str) else None
            self._language_stale = False
        return self._language

    def _meta_changed(self, event: MapEvent) -> None:
        self._language_stale = True
        self._listener.language_changed(self)

    async def set_language(self, language: str) -> None:
        """Set `meta.language` as an editor would, through the store-then-relay path."""
        # On a copy of the whole document: a map key written without the current state would
        # be concurrent with the existing value, and could lose to it.
        scratch = new_document(self.doc.get_update())
        before = scratch.get_state()
        meta_of(scratch)[LANGUAGE_KEY] = language
        await self.apply_update(scratch.get_update(before), origin=None)

    async def replace_text(self, name: str, new: str) -> None:
        """Make the text `name` equal `new` with minimal edits, relayed to every peer."""
        await self.apply_update(replacement_update(self.doc.get_update(), name, new), origin=None)
