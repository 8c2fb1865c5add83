"""uvicorn's WebSocket protocol (websockets-sansio), with closes that a client cannot hold open.

A client that stops reading fills the kernel's buffers and then uvicorn's: `send` waits for the
transport to become writable, and so does a `websocket.close`, for ever. When it is written,
uvicorn ends the connection with `transport.close()`, which waits for the write buffer to drain,
for ever too. Four such clients, closed as too slow (4504), kept their connections, their tasks
and their slots under `COLLAB_MAX_CONNECTIONS` until the process stopped. Here a close is
written at once, behind what is buffered (a slow client that catches up still reads its close
code), and a connection whose closing handshake has not finished `close_timeout` later is
aborted, as is one that misses its pong, and one that holds up the server's stopping.

It also lets a peer write a ready-made frame. Every ASGI `websocket.send` builds its frame again
(websockets' `Frame`, its serialisation, `data_to_send`) and passes through Starlette's and the
middleware's wrappers, for bytes that are the same for every peer of a room: server frames are
unmasked. The room builds each frame once (`protocol.frames`) and writes it to every idle peer's
transport through the `FrameWriter` this protocol puts in the scope's ASGI extensions. The writer
refuses (the peer then queues the message for the ASGI path) whenever a write could not go out as
the ASGI path would send it: before the handshake, once a close was sent or received, with
permessage-deflate, or while the transport is paused because the client is not reading.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import Any

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

FRAME_WRITER = "collab.frame_writer"  # the key in scope["extensions"]


class PromptCloseProtocol(WebSocketsSansIOProtocol):
    async def send(self, message: ASGISendEvent) -> None:
        if message["type"] == "websocket.close" and self.handshake_complete:
            # Do not wait for room in the buffer: a frame sent after this one is refused anyway.
            self.writable.set()
        await super().send(message)
        if message["type"] == "websocket.close" and self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self._reset)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self._reset()  # close() would wait for a buffer the client does not read

    def shutdown(self) -> None:
        """The server stops: its close (1012) is written and the connection ends when the client
        answers it, or with a reset `close_timeout` later. uvicorn's own `transport.close()` here
        would leave a client that does not read to the kernel, which keeps the socket and its
        unsent megabytes (and the client its connection) long after the process has gone."""
        if self.close_sent or not self.handshake_complete or self.disconnected:
            super().shutdown()
            self.loop.call_later(self.close_timeout, self._reset)
            return
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1012})
        self.conn.send_close(1012)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True  # the client's answer (`handle_close`) ends the connection
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self._reset)

    def _reset(self) -> None:
        """Drop the connection with a TCP reset: closing it the usual way leaves the kernel
        holding its unsent megabytes, trying to deliver them to a client that does not read."""
        if self.disconnected:
            return
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_NONE)
        self.transport.abort()


_LINGER_NONE = struct.pack("ii", 1, 0)  # l_onoff, l_linger: close() resets at once


class FrameWriter:
    def __init__(self, protocol: RelayWebSocketProtocol) -> None:
        self._protocol = protocol

    def write(self, frame: bytes) -> bool:
        """Write one complete frame now, if the connection takes it as the ASGI path would;
        False (nothing written) if not."""
        protocol = self._protocol
        if (
            not protocol.handshake_complete
            or protocol.close_sent
            or protocol.conn.state is not State.OPEN
            or protocol.conn.extensions
            or not protocol.writable.is_set()
            or protocol.transport.is_closing()
        ):
            return False
        protocol.transport.write(frame)
        return True


class RelayWebSocketProtocol(PromptCloseProtocol):
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none when the handshake was refused
        if scope is not None:
            scope["extensions"][FRAME_WRITER] = FrameWriter(self)
