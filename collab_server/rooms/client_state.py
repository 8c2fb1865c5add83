"""Waiting until a room's document holds everything a client had: its Yjs state vector.

A client's keystroke travels over its WebSocket while its completion request travels over HTTP;
the request can arrive first, or before the update is stored and applied. With the state vector
the client had when it asked (`Y.encodeStateVector(doc)`), the server waits for that update
instead of answering against an older text.
"""

from __future__ import annotations

import asyncio

from collab_server.protocol import ProtocolError
from collab_server.protocol.varint import Reader
from collab_server.rooms.room import Room


def decode_state_vector(data: bytes) -> dict[int, int]:
    """client id -> clock; raise `ProtocolError` on anything that is not a state vector."""
    reader = Reader(data)
    entries = {}
    for _ in range(reader.read_var_uint()):
        client = reader.read_var_uint()
        entries[client] = reader.read_var_uint()
    if not reader.at_end:
        raise ProtocolError("trailing bytes after the state vector")
    return entries


def holds(room: Room, wanted: dict[int, int]) -> bool:
    have = decode_state_vector(room.doc.get_state())
    return all(have.get(client, 0) >= clock for client, clock in wanted.items())


async def wait_until_holds(room: Room, wanted: dict[int, int]) -> None:
    """Return once the room's document holds every update counted in `wanted`.

    Never returns if it does not get them: the caller bounds the wait.
    """
    changed = asyncio.Event()
    subscription = room.doc.observe(lambda _: changed.set())
    try:
        while not holds(room, wanted):
            changed.clear()
            await changed.wait()
    finally:
        room.doc.unobserve(subscription)
