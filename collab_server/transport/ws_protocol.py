"""uvicorn's WebSocket protocol (websockets-sansio), with closes that a client cannot hold open.

A client that stops reading fills the kernel's buffers and then uvicorn's: `send` waits for the
transport to become writable, and so does a `websocket.close`, for ever. When it is written,
uvicorn ends the connection with `transport.close()`, which waits for the write buffer to drain,
for ever too. Four such clients, closed as too slow (4504), kept their connections, their tasks
and their slots under `COLLAB_MAX_CONNECTIONS` until the process stopped. Here a close is
written at once, behind what is buffered (a slow client that catches up still reads its close
code), and a connection whose closing handshake has not finished `close_timeout` later is
aborted, as is one that misses its pong, and one that holds up the server's stopping.
"""

from __future__ import annotations

import contextlib
import socket
import struct

from uvicorn._types import ASGISendEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


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
