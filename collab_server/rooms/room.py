"""A room: one CRDT document, the peers editing it, their presence, and the fan-out between them.

Invariant: the in-memory document only ever holds updates the store has already accepted, applied
one by one in the order the store keeps them, as a restart replays them. An update is decoded and
checked (`protocol.update`, then `rooms.shape` against the document), appended durably, and only
then applied and relayed, so whatever any client (or a REST reader) has seen survives a crash of
this process, and a restart rebuilds exactly the document clients saw. (The one exception is a
PostgreSQL outage, when the store accepts updates into a bounded memory buffer: see
docs/postgres.md.) If yrs still fails on a stored update, that update is taken out of the store
again before anyone sees it, and the document is rebuilt from the store.
"""

from __future__ import annotations

import asyncio
import logging

from pycrdt import Text, merge_updates

from collab_server.languages import LANGUAGES
from collab_server.protocol import (
    AuthMessage,
    AwarenessEntry,
    AwarenessMessage,
    ProtocolError,
    QueryAwareness,
    SyncStep1,
    encode_awareness,
    encode_awareness_message,
    encode_sync_step1,
    encode_sync_step2,
)
from collab_server.protocol.update import (
    UpdateLimits,
    UpdateRefused,
    decode_update,
    refused,
)
from collab_server.rooms.admission import Admission, Admitted, CheckedUpdate, check_update
from collab_server.rooms.authorship import SERVER, Authorship, named
from collab_server.rooms.document import (
    LANGUAGE_KEY,
    SERVER_CLIENT_ID,
    CrdtFailure,
    apply_update,
    is_panic,
    meta_of,
    new_document,
    text_of,
)
from collab_server.rooms.editors import Editors
from collab_server.rooms.peer import Outbound, OutboundUpdate, Peer
from collab_server.rooms.presence import Presence
from collab_server.rooms.snapshot import (
    LogUnreplayable,
    Replay,
    load_stored,
    log_parts,
)
from collab_server.rooms.text_edit import replacement_update, restoration_update
from persistence import BUFFERED, Author, RoomMissing, Store, StoredLog, StoreError

logger = logging.getLogger(__name__)

# An update that carries nothing: no structs, an empty delete set.
EMPTY_UPDATE = b"\x00\x00"
# Decoding and checking updates larger than this (Python: about 5 us a struct) runs off the
# event loop, so that a big paste or an 8 MB import does not hold up every other room.
HEAVY_UPDATE_BYTES = 64 * 1024


# What a client sends that the room answers without storing anything.
ClientRequest = SyncStep1 | AwarenessMessage | QueryAwareness | AuthMessage


class RoomDeleted(Exception):
    """The room was deleted while someone was still writing to it."""


class RoomListener:
    """What the owner of a room hears about it (the registry: compaction, other processes)."""

    def update_stored(self, room: Room, merged: bytes, seqs: list[int], size: int) -> None:
        """Local updates (`size` bytes in all, one sequence number each in `seqs`) were stored,
        applied and relayed as `merged`."""

    def language_changed(self, room: Room) -> None:
        """The document's `meta` map changed (from any source): its language may have."""

    def awareness_changed(self, room: Room, entries: list[AwarenessEntry]) -> None:
        """Local clients' awareness changed (states, or removals when they leave)."""

    def room_missing(self, room: Room) -> None:
        """The store no longer has the room: it was deleted, perhaps by another process."""

    def update_refused(self, room: Room, error: UpdateRefused) -> None:
        """An update was refused before it was stored."""

    def room_broken(self, room: Room, reason: str) -> None:
        """The in-memory document can no longer be trusted and could not be rebuilt: drop it
        (a later load checks the stored log again)."""


class Room:
    def __init__(
        self,
        room_id: str,
        state: Replay,
        store: Store,
        *,
        limits: UpdateLimits,
        log_rows: int = 0,
        log_bytes: int = 0,
        listener: RoomListener | None = None,
    ) -> None:
        self.id = room_id
        self.doc = state.doc
        self.peers: set[Peer] = set()
        self.deleted = False
        self.broken = False
        self.leases = 0  # holders that keep the room in memory (kept by the registry)
        self.log_rows = log_rows  # updates in the store's log since the last snapshot
        self.log_bytes = log_bytes
        self.limits = limits
        self._admission = Admission(room_id, state.shape, limits)
        self._checking = asyncio.Lock()  # the shape is checked (and changed) by one at a time
        # The server's edits share one client id: each is made from the document the previous
        # one left (the same clock twice would be two contents for one id).
        self._own_edits = asyncio.Lock()
        self._store = store
        self._presence = Presence(room_id=room_id)
        self.editors = Editors(self._presence.names_of)  # since the last version
        self.authorship = Authorship(room_id)  # who wrote what, not yet in the store
        self._listener = listener or RoomListener()
        # Each batch applies after the one admitted before it: the store's order.
        self._last_turn: asyncio.Future[None] | None = None
        self._language: str | None = None
        self._read_language()

    def __repr__(self) -> str:
        return f"<Room {self.id} with {len(self.peers)} peers>"

    # -- peers --------------------------------------------------------------------------------

    def join(self, peer: Peer) -> None:
        """Add a peer and greet it: our state vector, then every current awareness state."""
        self.peers.add(peer)
        peer.send(encode_sync_step1(self.doc.get_state()))
        self._send_presence(peer)
        logger.info("room %s peer %s joined (%d peers)", self.id, peer.id, len(self.peers))

    def _send_presence(self, peer: Peer) -> None:
        """Every current state, in the message encoded once per change (a newcomer's greeting,
        or an answer to a query: a client asking over and over costs no encoding)."""
        self._relay_presence(self._presence.expire())
        greeting = self._presence.greeting()
        if greeting is not None:
            peer.send(greeting)

    def leave(self, peer: Peer) -> None:
        """Remove a peer and tell the others that its cursors are gone."""
        self.peers.discard(peer)
        self.editors.left(peer)
        self._relay_presence(self._presence.remove_peer(peer))
        logger.info("room %s peer %s left (%d peers)", self.id, peer.id, len(self.peers))

    def close_peers(self, code: int, reason: str) -> None:
        for peer in list(self.peers):
            peer.close(code, reason)

    # -- messages -----------------------------------------------------------------------------

    def answer(self, peer: Peer, message: ClientRequest) -> None:
        """Handle a message from `peer` that stores nothing; raise `ProtocolError` if it is
        unacceptable. (A client's updates come in through its `Connection`.)"""
        if isinstance(message, AwarenessMessage):
            self._relay_presence(self._presence.apply(self._presence.decode(message.payload), peer))
        elif isinstance(message, SyncStep1):
            peer.send(encode_sync_step2(self.update_since(message.state_vector)))
        elif isinstance(message, QueryAwareness):
            self._send_presence(peer)
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
        except (ValueError, RuntimeError) as error:
            raise ProtocolError(f"invalid state vector: {error}") from error
        except BaseException as error:
            if not is_panic(error):
                raise
            raise ProtocolError(f"invalid state vector: {error}") from error

    # -- updates ------------------------------------------------------------------------------

    async def check(self, update: bytes) -> CheckedUpdate:
        """Decode an update within the limits; raise `UpdateRefused` (4422) if it is malformed
        or over them, or yrs cannot read it."""
        try:
            if len(update) > HEAVY_UPDATE_BYTES:
                return await asyncio.to_thread(check_update, update, self.limits)
            return check_update(update, self.limits)
        except UpdateRefused as error:
            self._listener.update_refused(self, error)
            raise

    async def write(self, update: bytes) -> None:
        """Check, store, apply and relay one update from this server (REST writes, its own
        edits)."""
        await self.store_updates([await self.check(update)], origin=None)

    async def store_updates(self, updates: list[CheckedUpdate], origin: Peer | None) -> None:
        """Check updates against the document, store them in one batch, then apply them and
        relay them to every peer, in the store's order. `origin` is the peer they came from
        (None: REST, the server's own edits); it is sent them back like everyone else. The
        one way into the store: every update in it was checked here.

        If one is refused, the ones before it are stored and relayed all the same, and its
        `UpdateRefused` is raised after them.
        """
        updates = [update for update in updates if not update.is_empty]
        if not updates:
            return
        if self.deleted or self.broken:
            raise RoomDeleted(self.id)
        async with self._checking:
            if sum(len(update.data) for update in updates) > HEAVY_UPDATE_BYTES:
                admitted = await asyncio.to_thread(
                    self._admission.admit, updates, origin is not None
                )
            else:
                admitted = self._admission.admit(updates, origin is not None)
            work = None
            if admitted.updates:
                previous, turn = self._last_turn, asyncio.get_running_loop().create_future()
                self._last_turn = turn
                # Started while checks are held, so batches reach the store in the order they
                # were checked; shielded, so that what is stored is applied even if the caller
                # is cancelled.
                work = asyncio.ensure_future(
                    self._store_and_apply(admitted, origin, previous, turn)
                )
                work.add_done_callback(_retrieve)
        for error in admitted.parked_refused:
            self._parked_refused(error)
        if admitted.refusal is not None:
            self._listener.update_refused(self, admitted.refusal)
        if work is not None:
            await asyncio.shield(work)
        if admitted.refusal is not None:
            raise admitted.refusal

    async def _store_and_apply(
        self,
        admitted: Admitted,
        origin: Peer | None,
        previous: asyncio.Future[None] | None,
        turn: asyncio.Future[None],
    ) -> None:
        raw = [update.data for update in admitted.updates]
        try:
            try:
                seqs = await self._store.append_many(self.id, raw)
            except RoomMissing as error:
                self._listener.room_missing(self)
                raise RoomDeleted(self.id) from error
            except BaseException:
                # The shape holds updates the document will not: rebuilt from the document.
                self._admission.lost_sync(self.doc.get_update())
                raise
            if previous is not None:
                await previous
            if self.broken:
                return  # the document was dropped; a reload reads these from the store
            try:
                for update in raw:
                    apply_update(self.doc, update)
            except CrdtFailure as failure:
                await self._take_back(seqs, failure)
                refusal = refused(failure.reason, "crdt")
                self._listener.update_refused(self, refusal)
                raise refusal from failure
        finally:
            turn.set_result(None)
        # One message for the whole batch: peers' queues grow by one item, not by the batch.
        # The sender gets it back too, as from y-websocket's own server: the 4.x client shows
        # its edits saved only once it sees them come back.
        update = raw[0] if len(raw) == 1 else merge_updates(*raw)
        outbound = OutboundUpdate.of(update)
        for peer in self.peers:
            peer.send_update(outbound)
        self.editors.stored(origin)
        self.authorship.record(admitted.placed, self._author_of(origin))
        size = sum(map(len, raw))
        self.log_rows += len(raw)
        self.log_bytes += size
        if admitted.meta:
            self._language_changed()
        self._listener.update_stored(self, update, seqs, size)

    def _author_of(self, origin: Peer | None) -> Author:
        """Who wrote what `origin` sent: the server (None), the person its token names, or the
        name its presence announces."""
        if origin is None:
            return SERVER
        if origin.author is not None:
            return origin.author
        names = self._presence.names_of(origin)
        return named(names[0] if names else None, self_declared=True)

    async def _take_back(self, seqs: list[int], failure: CrdtFailure) -> None:
        """yrs failed on stored updates nobody has seen: remove them from the store and
        rebuild the document from what is left there."""
        logger.error(
            "room %s: the CRDT core failed on a stored update: %s", self.id, failure.reason
        )
        if BUFFERED in seqs:
            self._break("a failed update is only in the outage buffer; reload from the store")
            return
        try:
            await self._store.discard(self.id, seqs)
            log = await self._store.load(self.id)
            parts = log_parts(log)
            self._replace_state(await asyncio.to_thread(load_stored, parts, self.limits))
        except (StoreError, LogUnreplayable) as error:
            self._break(f"could not rebuild after a failed update: {error}")

    def _parked_refused(self, error: UpdateRefused) -> None:
        # Its sender heard nothing: it resends it on its next sync.
        self._listener.update_refused(self, error)
        logger.warning("room %s: a parked update refused: %s", self.id, error)

    def _break(self, reason: str) -> None:
        logger.error("room %s: %s", self.id, reason)
        self.broken = True
        self._listener.room_broken(self, reason)

    def _replace_state(self, state: Replay) -> None:
        self.doc = state.doc
        self._admission.reset(state.shape)
        self._language_changed()

    def _relay_presence(self, changed: list[AwarenessEntry]) -> None:
        if not changed:
            return
        # Echo to the sender too: the stock client drops a socket that hears nothing for 30 s.
        self._broadcast(self._awareness_frame(changed))
        self._listener.awareness_changed(self, changed)

    # -- other server processes ---------------------------------------------------------------

    async def apply_remote_updates(self, updates: list[bytes]) -> None:
        """Updates another process stored (so durable already): apply them, relay them."""
        async with self._checking:
            before = self.doc.get_state()
            self._apply_stored(updates)
            if not self.broken:
                self._relay_since(before)

    def apply_remote_awareness(self, entries: list[AwarenessEntry]) -> None:
        accepted = self._presence.apply(entries, None)
        if accepted:
            self._broadcast(self._awareness_frame(accepted))

    def local_awareness(self) -> list[AwarenessEntry]:
        """The states of this process's own clients, for a process that just loaded the room."""
        return self._presence.entries(local_only=True)

    async def read_missed(self, log: StoredLog) -> None:
        """Apply whatever the store has that this copy lacks (messages from other processes
        that did not arrive)."""
        async with self._checking:
            before = self.doc.get_state()
            self._apply_stored(log_parts(log))
            if not self.broken:
                self._relay_since(before)

    def _apply_stored(self, updates: list[bytes]) -> None:
        """Apply updates that are in the store already, checking only what protects yrs."""
        meta = False
        try:
            for update in updates:
                decoded = decode_update(update, self.limits, strict=False)
                meta |= self._admission.admit_stored(decoded)
                apply_update(self.doc, update)
        except (ProtocolError, CrdtFailure) as error:
            self._break(f"a stored update from another process does not apply: {error}")
            return
        if meta:
            self._language_changed()

    def _relay_since(self, before: bytes) -> None:
        missing = self.doc.get_update(before)
        outbound = OutboundUpdate.of(missing)
        for peer in self.peers:
            peer.send_update(outbound)

    def _broadcast(self, frame: bytes) -> None:
        outbound = Outbound.of(frame)
        for peer in self.peers:
            peer.send(outbound)

    @staticmethod
    def _awareness_frame(entries: list[AwarenessEntry]) -> bytes:
        return encode_awareness_message(encode_awareness(entries))

    # -- content ------------------------------------------------------------------------------

    def text(self, name: str) -> Text:
        """The shared text `name` (y-codemirror.next uses "codemirror")."""
        return text_of(self.doc, name)

    @property
    def language(self) -> str | None:
        return self._language

    def _read_language(self) -> None:
        # Read only after an update touched the meta map: a Map.get per keystroke cost ~10 %.
        # Any client may write it: a value outside the API's enum counts as none.
        value = meta_of(self.doc).get(LANGUAGE_KEY)
        self._language = value if value in LANGUAGES else None

    def _language_changed(self) -> None:
        self._read_language()
        self._listener.language_changed(self)

    async def set_language(self, language: str) -> None:
        """Set `meta.language` as an editor would, through the store-then-relay path."""
        # On a copy of the whole document: a map key written without the current state would
        # be concurrent with the existing value, and could lose to it.
        async with self._own_edits:
            scratch = new_document(self.doc.get_update(), client_id=SERVER_CLIENT_ID)
            before = scratch.get_state()
            meta_of(scratch)[LANGUAGE_KEY] = language
            await self.write(scratch.get_update(before))

    async def restore(self, texts: dict[str, str], meta: dict[str, object]) -> None:
        """Make the texts named in `texts` and the `meta` map what they hold, by minimal edits
        in one transaction (a version restored), relayed to every peer."""
        async with self._own_edits:
            state = self.doc.get_update()
            update = await asyncio.to_thread(restoration_update, state, texts, meta)
            if update != EMPTY_UPDATE:
                await self.write(update)

    async def replace_text(self, name: str, new: str) -> None:
        """Make the text `name` equal `new` with minimal edits, relayed to every peer."""
        # The diff runs off the event loop, on a scratch copy made in that thread.
        async with self._own_edits:
            state = self.doc.get_update()
            update = await asyncio.to_thread(replacement_update, state, name, new)
            await self.write(update)


def _retrieve(work: asyncio.Future[None]) -> None:
    """Mark a shielded batch's outcome as seen when its caller was cancelled meanwhile."""
    if not work.cancelled():
        work.exception()
