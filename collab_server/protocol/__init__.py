"""The y-protocols v1 wire format (sync, awareness, auth): pure functions, no I/O."""

from collab_server.protocol.awareness import AwarenessEntry, decode_awareness, encode_awareness
from collab_server.protocol.close_codes import CloseCode
from collab_server.protocol.errors import ProtocolError
from collab_server.protocol.messages import (
    AuthMessage,
    AwarenessMessage,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_message,
    encode_awareness_message,
    encode_permission_denied,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)

__all__ = [
    "AuthMessage",
    "AwarenessEntry",
    "AwarenessMessage",
    "CloseCode",
    "Message",
    "ProtocolError",
    "QueryAwareness",
    "SyncStep1",
    "SyncStep2",
    "SyncUpdate",
    "decode_awareness",
    "decode_message",
    "encode_awareness",
    "encode_awareness_message",
    "encode_permission_denied",
    "encode_sync_step1",
    "encode_sync_step2",
    "encode_update",
]
