"""uvicorn's websockets-sansio protocol, with a way for a peer to write a ready-made frame.

Every ASGI `websocket.send` builds its frame again (websockets' `Frame` object, its serialisation,
`data_to_send`) and passes through Starlette's and the middleware's wrappers; a room relaying a
keystroke to twenty peers did that twenty times for identical bytes. Server frames are unmasked,
so the room builds each frame once (`protocol.frames`) and writes the same bytes to every peer's
transport through the `FrameWriter` this protocol puts in the scope's ASGI extensions. The writer
refuses (and the peer falls back to its queue and the ASGI path) whenever a write could not go out
as the ASGI path would send it: before the handshake, once a close was sent or received, with
permessage-deflate, or while the transport is paused because the client is not reading.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

FRAME_WRITER = "collab.frame_writer"  # the key in scope["extensions"]


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


class RelayWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none when the handshake was refused
        if scope is not None:
            scope["extensions"][FRAME_WRITER] = FrameWriter(self)
