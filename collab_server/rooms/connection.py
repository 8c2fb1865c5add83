"""One client's way into its room: every message it sends comes in through `Connection.receive`.

The room never sees a socket (y-sweet's `DocConnection` is the model): the transport decodes
frames into messages and hands them over; the connection holds the client's read-only gate,
checks its updates (`Room.check`) and queues them for the room's store-then-relay path
(`UpdateIntake`); everything else the room answers at once.
"""

from __future__ import annotations

from collections.abc import Callable

from collab_server.protocol import Message, SyncStep2, SyncUpdate
from collab_server.rooms.intake import UpdateIntake
from collab_server.rooms.peer import Peer
from collab_server.rooms.room import Room


class Connection:
    def __init__(
        self,
        room: Room,
        peer: Peer,
        *,
        writable: bool,
        on_failure: Callable[[Exception], None],
    ) -> None:
        """`on_failure`: what to do when storing the client's updates failed (close it)."""
        self.room = room
        self.peer = peer
        self.writable = writable
        self._intake = UpdateIntake(room, peer, on_failure=on_failure)

    async def receive(self, message: Message) -> None:
        """Handle one message; raise `ProtocolError` if it is unacceptable (the client is then
        closed with its code). Waits while the client's queued updates are at their bound.

        A viewer's updates are dropped unread, not refused: its client sends its state in sync
        step 2 on every connect, and a close would only make it reconnect and send it again.
        """
        if isinstance(message, SyncUpdate | SyncStep2):
            if self.writable:
                await self._intake.put(await self.room.check(message.update))
        else:
            self.room.answer(self.peer, message)

    async def store_updates(self) -> None:
        """Store, apply and relay the client's queued updates, batch by batch, until
        cancelled."""
        await self._intake.run()

    async def drained(self) -> None:
        """Wait until every update received so far is stored and relayed (or has failed)."""
        await self._intake.drained()
