"""y-protocols v1 messages as frozen dataclasses, decoded once and encoded once."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from collab_server.protocol.errors import ProtocolError
from collab_server.protocol.varint import Reader, write_var_bytes, write_var_string, write_var_uint


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


PERMISSION_DENIED = 0  # the one auth message y-protocols defines (server to client)


class SyncType(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


@dataclass(frozen=True, slots=True)
class SyncStep1:
    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    payload: bytes  # an encoded awareness update, see protocol.awareness


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


@dataclass(frozen=True, slots=True)
class AuthMessage:
    payload: bytes  # the rest of the frame; servers never act on it


Message = SyncStep1 | SyncStep2 | SyncUpdate | AwarenessMessage | QueryAwareness | AuthMessage


def decode_message(frame: bytes) -> Message:
    """Decode one binary WebSocket frame; raise `ProtocolError` if it is not a valid message."""
    reader = Reader(frame)
    kind = reader.read_var_uint()
    message: Message
    if kind == MessageType.SYNC:
        sync_type = reader.read_var_uint()
        payload = reader.read_var_bytes()
        if sync_type == SyncType.STEP1:
            message = SyncStep1(payload)
        elif sync_type == SyncType.STEP2:
            message = SyncStep2(payload)
        elif sync_type == SyncType.UPDATE:
            message = SyncUpdate(payload)
        else:
            raise ProtocolError(f"unknown sync message type {sync_type}")
    elif kind == MessageType.AWARENESS:
        message = AwarenessMessage(reader.read_var_bytes())
    elif kind == MessageType.QUERY_AWARENESS:
        message = QueryAwareness()
    elif kind == MessageType.AUTH:
        return AuthMessage(frame[1:])
    else:
        raise ProtocolError(f"unknown message type {kind}")
    reader.expect_end()
    return message


def _sync_frame(sync_type: SyncType, payload: bytes) -> bytes:
    return bytes((MessageType.SYNC, sync_type)) + write_var_bytes(payload)


def encode_sync_step1(state_vector: bytes) -> bytes:
    return _sync_frame(SyncType.STEP1, state_vector)


def encode_sync_step2(update: bytes) -> bytes:
    return _sync_frame(SyncType.STEP2, update)


def encode_update(update: bytes) -> bytes:
    return _sync_frame(SyncType.UPDATE, update)


def encode_awareness_message(payload: bytes) -> bytes:
    return b"".join((bytes((MessageType.AWARENESS,)), write_var_uint(len(payload)), payload))


def encode_permission_denied(reason: str) -> bytes:
    """The auth message y-websocket reports as "Permission denied to access <url>: <reason>"."""
    return bytes((MessageType.AUTH, PERMISSION_DENIED)) + write_var_string(reason)
