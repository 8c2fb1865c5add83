"""WebSocket close codes the server sends.

The stock y-websocket client (3.x) never reconnects after a code in 4400-4499 (the client must
not retry the same thing) and reconnects after any other code.
"""

from __future__ import annotations

from enum import IntEnum


class CloseCode(IntEnum):
    GOING_AWAY = 1001  # the server is shutting down; reconnect
    INTERNAL_ERROR = 1011  # a bug of ours; reconnect
    TRY_AGAIN_LATER = 1013  # the process or the room holds all the connections it may
    BAD_MESSAGE = 4400  # malformed frame, unknown message type, invalid room name
    UNAUTHORIZED = 4401  # no token, or an invalid or expired one
    FORBIDDEN = 4403  # a valid token for another room
    ROOM_DELETED = 4404  # deleted meanwhile, or (for a viewer, who may not create it) absent
    MESSAGE_TOO_BIG = 4413
    TEXT_FRAME = 4415  # the protocol is binary
    UPDATE_REJECTED = 4422  # an update the server refuses (malformed, over a limit, ...)
    ROOM_QUARANTINED = 4423  # the room's stored log cannot be replayed; an admin must recover it
    STORE_UNAVAILABLE = 4503  # transient: reconnect and resync later
    PEER_TOO_SLOW = 4504  # transient: the client fell too far behind; reconnect and resync
