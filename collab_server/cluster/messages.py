"""What server processes tell each other about a room, framed for a Redis channel."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from collab_server.protocol import ProtocolError
from collab_server.protocol.varint import Reader, write_var_bytes, write_var_uint

NODE_ID_BYTES = 16
# Sequence numbers one message may carry: a batch of appends is at most a few thousand updates.
MAX_SEQS = 100_000


class MessageKind(IntEnum):
    UPDATE = 1  # a document update without sequence numbers (from servers before STORED)
    AWARENESS = 2  # encoded awareness entries of clients connected to the sender
    QUERY_AWARENESS = 3  # "send me your clients' awareness states": a node just loaded the room
    DELETED = 4  # the room was deleted
    RESYNC = 5  # the sender could not publish for a while: catch up from the store
    STORED = 6  # a `StoredUpdate`: document updates in the shared store, with their numbers


@dataclass(frozen=True, slots=True)
class BusMessage:
    node: bytes  # the sending process
    kind: MessageKind
    payload: bytes = b""

    def encode(self) -> bytes:
        return self.node + bytes((self.kind,)) + self.payload


class BadBusMessage(ValueError):
    """Bytes on a room channel that no server of ours wrote."""


def decode_bus_message(data: bytes) -> BusMessage:
    if len(data) <= NODE_ID_BYTES:
        raise BadBusMessage(f"{len(data)} bytes is too short for a bus message")
    try:
        kind = MessageKind(data[NODE_ID_BYTES])
    except ValueError as error:
        raise BadBusMessage(f"unknown bus message kind {data[NODE_ID_BYTES]}") from error
    return BusMessage(data[:NODE_ID_BYTES], kind, data[NODE_ID_BYTES + 1 :])


@dataclass(frozen=True, slots=True)
class StoredUpdate:
    """Updates a process appended to a room's log, merged into one, with the sequence numbers the
    store gave them: a process that sees a number skipped knows it missed something.

    `seqs` is empty for updates accepted into the store's memory during a database outage, which
    get their numbers only when they are written."""

    seqs: tuple[int, ...]
    update: bytes

    def encode(self) -> bytes:
        numbers = b"".join(map(write_var_uint, self.seqs))
        return write_var_uint(len(self.seqs)) + numbers + write_var_bytes(self.update)


def decode_stored_update(payload: bytes) -> StoredUpdate:
    reader = Reader(payload)
    try:
        count = reader.read_var_uint()
        if count > MAX_SEQS:
            raise BadBusMessage(f"{count} sequence numbers in one update message")
        seqs = tuple(reader.read_var_uint() for _ in range(count))
        update = reader.read_var_bytes()
        reader.expect_end()
    except ProtocolError as error:
        raise BadBusMessage(f"malformed update message: {error}") from error
    if 0 in seqs:
        raise BadBusMessage("sequence number 0 in an update message")
    return StoredUpdate(seqs, update)
