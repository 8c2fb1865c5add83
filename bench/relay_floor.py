"""Benchmark helper: the floor of a WebSocket relay in Python on uvloop, for comparison only.

Not a server anyone should run: it speaks just enough of the WebSocket protocol and of
y-protocols for `bench/loadgen.mjs` (each client's sync step 1 gets an empty sync step 2; every
other message goes to every client of the room, the sender included, as the reference server
and ours do), and it keeps nothing. No CRDT, no checks, no store, no ASGI: what is left is what
any Python relay on this machine pays to read a frame and write it to ten sockets.

    .venv/bin/python -m bench.relay_floor 8772 &
    node bench/loadgen.mjs --url ws://127.0.0.1:8772/ws/ --rooms 10 --clients 10 --rate 10 \\
        --duration 8 --server-pid $!

(The generator's final check finds the state missing, since nothing is kept: read its CPU and
latency figures only.)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import sys
from typing import cast

import uvloop
from websockets.speedups import apply_mask

from collab_server.protocol.frames import binary_frame

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OPCODE_CLOSE, OPCODE_BINARY, OPCODE_PING = 0x8, 0x2, 0x9
PONG_FINAL = 0x8A  # FIN, opcode 10
SYNC_STEP_1, SYNC_STEP_2 = bytes((0, 0)), bytes((0, 1))
EMPTY_SYNC_STEP_2 = binary_frame(SYNC_STEP_2 + bytes((2, 0, 0)))  # an empty update


class Relay(asyncio.Protocol):
    def __init__(self, rooms: dict[str, set[Relay]]) -> None:
        self._rooms = rooms
        self._room: set[Relay] | None = None
        self._buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self._room is not None:
            self._room.discard(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._room is None and not self._handshake():
            return
        self._buffer = self._frames(self._buffer)

    def _handshake(self) -> bool:
        assert self.transport is not None
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        head, self._buffer = self._buffer[:end].decode("latin-1"), self._buffer[end + 4 :]
        lines = head.split("\r\n")
        fields = (line.split(":", 1) for line in lines[1:] if ":" in line)
        headers = {name.strip().lower(): value.strip() for name, value in fields}
        key = headers.get("sec-websocket-key")
        if key is None:  # a health check
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            self.transport.close()
            return False
        accept = base64.b64encode(hashlib.sha1(key.encode() + ACCEPT_GUID).digest())
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self._room = self._rooms.setdefault(lines[0].split()[1], set())
        self._room.add(self)
        return True

    def _frames(self, buffer: bytes) -> bytes:
        """Handle every whole (masked, unfragmented) frame in `buffer`; return the rest."""
        assert self.transport is not None and self._room is not None
        position = 0
        while len(buffer) - position >= 6:
            size, header = buffer[position + 1] & 0x7F, 2
            if size == 126:
                size, header = int.from_bytes(buffer[position + 2 : position + 4], "big"), 4
            elif size == 127:
                size, header = int.from_bytes(buffer[position + 2 : position + 10], "big"), 10
            start = position + header + 4
            if len(buffer) < start + size:
                break
            opcode = buffer[position] & 0x0F
            payload = apply_mask(buffer[start : start + size], buffer[start - 4 : start])
            position = start + size
            if opcode == OPCODE_CLOSE:
                self.transport.close()
                break
            if opcode == OPCODE_PING:
                self.transport.write(bytes((PONG_FINAL, len(payload))) + payload)  # <= 125 B
            elif opcode != OPCODE_BINARY or payload[:2] == SYNC_STEP_2:
                continue
            elif payload[:2] == SYNC_STEP_1:
                self.transport.write(EMPTY_SYNC_STEP_2)
            else:
                frame = binary_frame(payload)
                for peer in self._room:
                    if peer.transport is not None:
                        peer.transport.write(frame)
        return buffer[position:]


async def serve(port: int) -> None:
    rooms: dict[str, set[Relay]] = {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Relay(rooms), "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1])))
