"""Server-to-client WebSocket frames (RFC 6455): unmasked, so one message's frame is the same bytes
for every peer, and a room can build it once per broadcast instead of once per peer."""

from __future__ import annotations

import struct

BINARY_FINAL = 0x82  # FIN, opcode 2 (binary); no extension bits: only without permessage-deflate


def binary_frame(payload: bytes) -> bytes:
    """One final binary frame carrying `payload`, as a server sends it."""
    size = len(payload)
    if size < 126:
        return bytes((BINARY_FINAL, size)) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", BINARY_FINAL, 126, size) + payload
    return struct.pack("!BBQ", BINARY_FINAL, 127, size) + payload
