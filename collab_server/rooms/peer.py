"""One connected client's outbound side: a bounded queue drained by one sender task.

The sender sends whatever has queued up since its last write; runs of document updates are merged
into one message first, so a client that lags a little gets fewer, larger frames instead of
falling further behind. A client that lags too far is closed (it reconnects and resyncs from its
state vector); nothing is dropped silently. A close does not wait for a send under way: a client
that stopped reading never lets one finish.

A message for a peer with nothing queued or being sent, whose socket takes it at once, skips all
that: it is written straight to the socket as a frame built once for every peer (`write_now`),
with no queue, no task wake-up and no framing per peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pycrdt import merge_updates

from collab_server.protocol import CloseCode, encode_update
from collab_server.protocol.frames import binary_frame
from persistence import Author

logger = logging.getLogger(__name__)

SendBytes = Callable[[bytes], Awaitable[None]]
CloseSocket = Callable[[int, str], Awaitable[None]]
# Writes a complete WebSocket frame now if the socket takes it; False (nothing written) if not.
WriteFrame = Callable[[bytes], bool]

_peer_numbers = itertools.count(1)

# merge_updates grows faster than linearly with the number of updates (measured: 3 us per update
# at 100, 38 us at 5,000), so long runs are sent as several merged messages.
MERGE_LIMIT = 100


class PeerDisconnected(Exception):
    """The transport could not send because the connection is gone."""


@dataclass(frozen=True, slots=True)
class OutboundUpdate:
    """A document update on its way to peers: made once per broadcast, queued for each peer."""

    update: bytes
    frame: bytes  # the same update, encoded once as a message
    wire: bytes  # that message as a WebSocket frame

    @classmethod
    def of(cls, update: bytes) -> OutboundUpdate:
        frame = encode_update(update)
        return cls(update, frame, binary_frame(frame))


@dataclass(frozen=True, slots=True)
class Outbound:
    """Any other message for several peers (presence), framed once."""

    frame: bytes
    wire: bytes

    @classmethod
    def of(cls, frame: bytes) -> Outbound:
        return cls(frame, binary_frame(frame))


class Peer:
    def __init__(
        self,
        room_id: str,
        send: SendBytes,
        close: CloseSocket,
        *,
        queue_limit: int,
        queue_bytes_limit: int = 16 * 1024 * 1024,
        write_now: WriteFrame | None = None,
    ) -> None:
        self.id = f"p{next(_peer_numbers)}"
        self.author: Author | None = None  # who its token names; None: its presence tells
        self.room_id = room_id
        self._send = send
        self._close_socket = close
        self._write_now = write_now
        self._draining = False  # the sender holds frames taken from the queue
        self._queue: deque[bytes | OutboundUpdate] = deque()
        self._queue_limit = queue_limit
        self._queue_bytes_limit = queue_bytes_limit
        self._queue_bytes = 0
        self._wakeup = asyncio.Event()
        self._close_request: tuple[int, str] | None = None
        self._stopped = False
        self._sending: asyncio.Task[None] | None = None  # the sender, while a send is under way

    def __repr__(self) -> str:
        return f"<Peer {self.id} in {self.room_id}>"

    @property
    def closing(self) -> bool:
        return self._close_request is not None or self._stopped

    @property
    def close_requested(self) -> bool:
        """The server closes this peer (a client that went away has not: what it sent before
        leaving is still to be read)."""
        return self._close_request is not None

    def send(self, message: bytes | Outbound) -> None:
        """Send one message (a frame built for this peer, or one built once for several)."""
        if self._written_now(message):
            return
        self._push(message.frame if isinstance(message, Outbound) else message)

    def send_update(self, update: OutboundUpdate) -> None:
        """Send a document update (queued messages next to it may be merged with it)."""
        if not self._written_now(update):
            self._push(update)

    def _written_now(self, message: bytes | Outbound | OutboundUpdate) -> bool:
        """Whether the message went straight to the socket: only with nothing queued or being
        sent before it, so that messages keep their order."""
        if self._write_now is None or self._queue or self._draining or self.closing:
            return False
        wire = binary_frame(message) if isinstance(message, bytes) else message.wire
        return self._write_now(wire)

    def _push(self, item: bytes | OutboundUpdate) -> None:
        if self.closing:
            return
        size = len(item.frame if isinstance(item, OutboundUpdate) else item)
        # One message larger than the bound (a big document's first sync) may still go alone.
        if len(self._queue) >= self._queue_limit or (
            self._queue and self._queue_bytes + size > self._queue_bytes_limit
        ):
            logger.warning(
                "room %s peer %s: %d messages (%d bytes) queued, closing it so it resyncs",
                self.room_id,
                self.id,
                len(self._queue),
                self._queue_bytes,
            )
            self.close(CloseCode.PEER_TOO_SLOW, "too far behind; reconnect to resync")
            return
        self._queue.append(item)
        self._queue_bytes += size
        self._wakeup.set()

    def _clear_queue(self) -> None:
        self._queue.clear()
        self._queue_bytes = 0

    def close(self, code: int, reason: str) -> None:
        """Ask the sender to close the connection with `code`; what is still queued is dropped."""
        if self.closing:
            return
        self._close_request = (code, reason)
        self._clear_queue()
        self._wakeup.set()
        if self._sending is not None:
            # It waits for the socket to take a frame, which a client that stopped reading
            # never does; the close must not wait behind it.
            self._sending.cancel()

    def stop(self) -> None:
        """The client left: let the sender finish (after a close already asked for, if any)."""
        if self._close_request is None:
            self._stopped = True
        self._clear_queue()
        self._wakeup.set()

    async def run(self) -> None:
        """Send queued messages until the peer is stopped or closed."""
        try:
            while not self._stopped:
                if self._close_request is not None:
                    code, reason = self._close_request
                    await self._close_socket(code, reason)
                    return
                if not self._queue:
                    await self._wakeup.wait()
                    self._wakeup.clear()
                    continue
                batch = list(self._queue)
                self._clear_queue()
                self._draining = True
                try:
                    for frame in _coalesce(batch):
                        await self._send_interruptibly(frame)
                        if self.closing:
                            break
                finally:
                    self._draining = False
        except PeerDisconnected:
            self._stopped = True
        except Exception:
            # A bug of ours must not take the room down: this one client reconnects and resyncs.
            logger.exception("room %s peer %s: sending failed", self.room_id, self.id)
            self._stopped = True
            with contextlib.suppress(PeerDisconnected):
                await self._close_socket(CloseCode.INTERNAL_ERROR, "internal error")

    async def _send_interruptibly(self, frame: bytes) -> None:
        """Send `frame`, or give up on it when `close` interrupts the wait."""
        self._sending = sender = asyncio.current_task()
        try:
            await self._send(frame)
        except asyncio.CancelledError:
            # A close asked for during this send cancelled it once; any other cancellation
            # (the connection's task group) stands.
            if self._close_request is None or sender is None or sender.uncancel():
                raise
        finally:
            self._sending = None


def _coalesce(batch: list[bytes | OutboundUpdate]) -> list[bytes]:
    """Frames for a batch, in order, with each run of updates merged into one message."""
    frames: list[bytes] = []
    run: list[OutboundUpdate] = []
    for item in batch:
        if isinstance(item, OutboundUpdate):
            run.append(item)
            if len(run) == MERGE_LIMIT:
                frames.append(_merge(run))
                run = []
            continue
        if run:
            frames.append(_merge(run))
            run = []
        frames.append(item)
    if run:
        frames.append(_merge(run))
    return frames


def _merge(run: list[OutboundUpdate]) -> bytes:
    if len(run) == 1:
        return run[0].frame
    return encode_update(merge_updates(*(item.update for item in run)))
