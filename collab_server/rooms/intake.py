"""One client's updates on their way into its room: stored in batches while reading goes on.

Awaiting each update's commit before reading the next would give a fast sender one update per
commit (an fsync each). Instead the connection keeps reading and queues the decoded updates
here; one task stores whatever has queued up as one batch, then applies and relays it in order.
The queue is bounded, so a client cannot run ahead of the store by more than `limit` updates.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from collab_server.rooms.admission import CheckedUpdate
from collab_server.rooms.peer import Peer
from collab_server.rooms.room import Room


class UpdateIntake:
    def __init__(
        self,
        room: Room,
        peer: Peer,
        *,
        on_failure: Callable[[Exception], None],
        limit: int = 64,  # merge_updates grows faster than linearly: keep batches modest
    ) -> None:
        self._room = room
        self._peer = peer
        self._on_failure = on_failure
        self._limit = limit
        self._queue: list[CheckedUpdate] = []
        self._wakeup = asyncio.Event()
        self._space = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.failed = False

    async def put(self, update: CheckedUpdate) -> None:
        """Queue a checked update; waits while `limit` updates are already queued."""
        while len(self._queue) >= self._limit and not self.failed:
            self._space.clear()
            await self._space.wait()
        if self.failed:
            return  # the peer is being closed; it resyncs when it reconnects
        self._queue.append(update)
        self._idle.clear()
        self._wakeup.set()

    async def drained(self) -> None:
        """Wait until everything queued so far is stored and relayed (or has failed)."""
        await self._idle.wait()

    async def run(self) -> None:
        """Store, apply and relay queued updates until cancelled."""
        while True:
            if not self._queue:
                self._idle.set()
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            batch, self._queue = self._queue, []
            self._space.set()
            if self.failed:
                continue
            try:
                await self._room.store_updates(batch, origin=self._peer)
            except Exception as error:
                self.failed = True
                self._space.set()
                self._on_failure(error)
