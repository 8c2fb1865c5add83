"""What server processes tell each other about a room, framed for a Redis channel."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

NODE_ID_BYTES = 16


class Kind(IntEnum):
    UPDATE = 1  # a document update, already durable in the shared store
    AWARENESS = 2  # encoded awareness entries of clients connected to the sender
    QUERY_AWARENESS = 3  # "send me your clients' awareness states": a node just loaded the room
    DELETED = 4  # the room was deleted
    RESYNC = 5  # the sender could not publish for a while: catch up from the store


@dataclass(frozen=True, slots=True)
class BusMessage:
    node: bytes  # the sending process
    kind: Kind
    payload: bytes = b""

    def encode(self) -> bytes:
        return self.node + bytes((self.kind,)) + self.payload


class BadBusMessage(ValueError):
    """Bytes on a room channel that no server of ours wrote."""


def decode_bus_message(data: bytes) -> BusMessage:
    if len(data) <= NODE_ID_BYTES:
        raise BadBusMessage(f"{len(data)} bytes is too short for a bus message")
    try:
        kind = Kind(data[NODE_ID_BYTES])
    except ValueError as error:
        raise BadBusMessage(f"unknown bus message kind {data[NODE_ID_BYTES]}") from error
    return BusMessage(data[:NODE_ID_BYTES], kind, data[NODE_ID_BYTES + 1 :])
