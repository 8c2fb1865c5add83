"""The WebSocket endpoint `/ws/{room}`: y-protocols v1, as the stock y-websocket client speaks it.

Everything a client can get wrong closes that one connection with a 4400-range code and a log
line; the room, its document and the other peers carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from collab_server.auth import AuthError, Grant, Role, Unauthenticated
from collab_server.protocol import (
    CloseCode,
    ProtocolError,
    decode_message,
    encode_permission_denied,
)
from collab_server.rooms.authorship import named
from collab_server.rooms.connection import Connection
from collab_server.rooms.ids import room_id_problem
from collab_server.rooms.openings import RoomsBusy
from collab_server.rooms.peer import Peer, PeerDisconnected, WriteFrame
from collab_server.rooms.quarantine import RoomQuarantined
from collab_server.rooms.registry import RoomRegistry
from collab_server.rooms.room import Room, RoomDeleted
from collab_server.settings import Settings
from collab_server.transport.access import connection_grant
from collab_server.transport.services import services
from collab_server.transport.throttle import Throttle
from collab_server.transport.ws_protocol import FRAME_WRITER, FrameWriter
from persistence import RoomMissing, StoreError

logger = logging.getLogger(__name__)

# uvicorn hands over every message of one socket read at once, and with a store that answers
# without suspending (memory) a receive loop would relay thousands of them before any peer's
# sender ran: the peers' queues then overflowed and they were closed as "too slow" when only the
# server was behind. Yielding to the loop every few messages lets the senders drain (and merge)
# their queues, and keeps one busy client from holding up every other room.
YIELD_EVERY_MESSAGES = 16
DRAIN_SECONDS = 10.0  # how long a closing connection waits for its queued updates to be stored
# Descriptors kept free beyond the connection cap: the store, REST clients, and the sockets of
# clients that are told the server is full.
RESERVED_DESCRIPTORS = 256
# A close frame holds 125 bytes, 2 of them the code; a longer reason (yrs's error messages run
# longer) made the close itself fail, and the client got no close frame at all.
MAX_CLOSE_REASON_BYTES = 123


class _Socket:
    """The two things a peer needs of a Starlette WebSocket, with its errors translated."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._metrics = services(websocket).metrics

    async def send(self, frame: bytes) -> None:
        try:
            await self._websocket.send_bytes(frame)
        except (OSError, RuntimeError, WebSocketDisconnect) as error:
            raise PeerDisconnected from error

    async def close(self, code: int, reason: str) -> None:
        if self._websocket.application_state == WebSocketState.CONNECTED:
            self._metrics.connections_closed[code] += 1
            try:
                await self._websocket.close(code, close_reason_text(reason))
            except (OSError, RuntimeError, WebSocketDisconnect) as error:
                raise PeerDisconnected from error


def _frame_writer(websocket: WebSocket) -> WriteFrame | None:
    """Where the peer may write ready-made frames (uvicorn with `RelayWebSocketProtocol`)."""
    writer = websocket.scope.get("extensions", {}).get(FRAME_WRITER)
    return writer.write if isinstance(writer, FrameWriter) else None


def close_reason_text(reason: str) -> str:
    """`reason` cut to what a close frame holds (whole UTF-8 characters only)."""
    return reason.encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")


async def serve_websocket(websocket: WebSocket) -> None:
    app_services = services(websocket)
    registry, settings = app_services.registry, app_services.settings
    room_id = websocket.path_params["room"]
    await websocket.accept()
    metrics = app_services.metrics
    if metrics.connections_open >= _connection_cap(settings):
        logger.warning("refused a connection: %d open already", metrics.connections_open)
        with contextlib.suppress(PeerDisconnected):
            await _Socket(websocket).close(CloseCode.TRY_AGAIN_LATER, "server full, retry later")
        return
    metrics.connections_open += 1
    try:
        await _serve_room(websocket, registry, settings, room_id)
    finally:
        metrics.connections_open -= 1


def _connection_cap(settings: Settings) -> int:
    if settings.max_connections:
        return settings.max_connections
    descriptors, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if descriptors == resource.RLIM_INFINITY:
        return 1_000_000
    return max(16, descriptors - RESERVED_DESCRIPTORS)


async def _serve_room(
    websocket: WebSocket, registry: RoomRegistry, settings: Settings, room_id: str
) -> None:
    problem = room_id_problem(room_id)
    if problem is not None:
        logger.info("refused room name %r: %s", room_id[:200], problem)
        with contextlib.suppress(PeerDisconnected):
            await _Socket(websocket).close(CloseCode.BAD_MESSAGE, problem)
        return
    grant = await _admit(websocket, room_id)
    if grant is None:
        return
    writable = grant.role >= Role.EDITOR
    try:
        # Joining creates a room, which is an editor's right: a viewer may only watch one.
        async with registry.lease(room_id, create=writable, opener=_host(websocket)) as room:
            await _serve_peer(websocket, room, settings, grant)
    except RoomQuarantined as error:
        logger.info("room %s: refused a peer: %s", room_id, error)
        with contextlib.suppress(PeerDisconnected):
            await _Socket(websocket).close(
                CloseCode.ROOM_QUARANTINED, "room quarantined: its history cannot be replayed"
            )
    except RoomsBusy as error:
        logger.info("room %s: refused a peer from %s: %s", room_id, _client(websocket), error)
        with contextlib.suppress(PeerDisconnected):
            await _Socket(websocket).close(CloseCode.TRY_AGAIN_LATER, error.reason)
    except RoomMissing:
        logger.info("room %s: no such room (a viewer may not create it; or deleted)", room_id)
        with contextlib.suppress(PeerDisconnected):
            await _Socket(websocket).close(CloseCode.ROOM_DELETED, "no such room")
    except StoreError as error:
        logger.warning("room %s: store unavailable, refusing a peer: %s", room_id, error)
        with contextlib.suppress(PeerDisconnected):  # the client may have left meanwhile
            await _Socket(websocket).close(
                CloseCode.STORE_UNAVAILABLE, "storage unavailable, retry later"
            )


async def _admit(websocket: WebSocket, room_id: str) -> Grant | None:
    """What the client may do in the room; None when it was refused (and closed).

    Refusals are y-protocols' "permission denied" message (y-websocket logs its reason) and a
    4400-range close code, after which the stock client does not retry with the same token.
    """
    try:
        grant = connection_grant(websocket, allow_query=True)
        grant.require(Role.VIEWER, room_id)
    except AuthError as error:
        code = CloseCode.UNAUTHORIZED if isinstance(error, Unauthenticated) else CloseCode.FORBIDDEN
        logger.info("room %s: refused a peer from %s: %s", room_id, _client(websocket), error)
        socket = _Socket(websocket)
        with contextlib.suppress(PeerDisconnected):
            await socket.send(encode_permission_denied(str(error)))
            await socket.close(code, str(error))
        return None
    return grant


def _host(websocket: WebSocket) -> str | None:
    return websocket.client.host if websocket.client else None


def _client(websocket: WebSocket) -> str:
    return f"{websocket.client.host}:{websocket.client.port}" if websocket.client else "?"


async def _serve_peer(websocket: WebSocket, room: Room, settings: Settings, grant: Grant) -> None:
    socket = _Socket(websocket)
    if len(room.peers) >= settings.room_max_connections:
        logger.warning("room %s: refused a peer: %d connected already", room.id, len(room.peers))
        with contextlib.suppress(PeerDisconnected):
            await socket.close(CloseCode.TRY_AGAIN_LATER, "room full, retry later")
        return
    peer = Peer(
        room.id,
        socket.send,
        socket.close,
        queue_limit=settings.peer_queue_messages,
        queue_bytes_limit=settings.peer_queue_bytes,
        write_now=_frame_writer(websocket),
    )
    if grant.user or grant.name:
        peer.author = named(grant.name, grant.user, self_declared=False)
    services(websocket).metrics.connections_opened += 1
    connection = Connection(
        room,
        peer,
        writable=grant.role >= Role.EDITOR,
        on_failure=lambda error: peer.close(*_close_reason(room, peer, error)),
    )
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(peer.run(), name=f"send {room.id}/{peer.id}")
        storing = tasks.create_task(connection.store_updates(), name=f"store {room.id}/{peer.id}")
        room.join(peer)
        try:
            try:
                code, reason = await _receive(websocket, connection, settings)
            except Exception as error:
                code, reason = _close_reason(room, peer, error)
            await _drain(connection)
        finally:
            storing.cancel()
            room.leave(peer)
        if code:
            peer.close(code, reason)
        else:
            peer.stop()


async def _receive(
    websocket: WebSocket, connection: Connection, settings: Settings
) -> tuple[int, str]:
    """Hand the client's messages to its connection until it leaves (code 0) or must be closed
    (code, reason)."""
    room, peer = connection.room, connection.peer
    max_bytes = settings.max_message_bytes
    throttle = Throttle(settings.client_messages_per_second)
    throttled = False
    handled = 0
    while True:
        event = await websocket.receive()
        if event["type"] == "websocket.disconnect":
            return 0, ""
        data = event.get("bytes")
        if data is None:
            logger.info("room %s peer %s sent a text frame", room.id, peer.id)
            return CloseCode.TEXT_FRAME, "the protocol is binary"
        if len(data) > max_bytes:
            logger.info(
                "room %s peer %s sent %d bytes (limit %d)", room.id, peer.id, len(data), max_bytes
            )
            return CloseCode.MESSAGE_TOO_BIG, f"message larger than {max_bytes} bytes"
        try:
            await connection.receive(decode_message(data))
        except ProtocolError as error:
            return _close_reason(room, peer, error)
        if peer.close_requested:
            return 0, ""
        handled += 1
        if delay := throttle.take():
            if not throttled:
                throttled = True
                services(websocket).metrics.connections_throttled += 1
                logger.info(
                    "room %s peer %s: over %g messages/s, reading it more slowly",
                    room.id,
                    peer.id,
                    settings.client_messages_per_second,
                )
            await asyncio.sleep(delay)
        elif handled % YIELD_EVERY_MESSAGES == 0:
            await asyncio.sleep(0)


async def _drain(connection: Connection) -> None:
    """What the client sent before it left is stored and relayed all the same."""
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            await connection.drained()
    except TimeoutError:
        room, peer = connection.room, connection.peer
        logger.warning("room %s peer %s: its last updates are not stored yet", room.id, peer.id)


def _close_reason(room: Room, peer: Peer, error: Exception) -> tuple[int, str]:
    """The close code for a failure while serving a peer, logged as it deserves."""
    if isinstance(error, ProtocolError):
        logger.info("room %s peer %s: %s", room.id, peer.id, error.reason)
        return error.code, error.reason
    if isinstance(error, RoomDeleted):
        return CloseCode.ROOM_DELETED, "room deleted"
    if isinstance(error, StoreError):
        logger.warning("room %s peer %s: update not stored: %s", room.id, peer.id, error)
        return CloseCode.STORE_UNAVAILABLE, "storage unavailable, retry later"
    logger.error("room %s peer %s: internal error", room.id, peer.id, exc_info=error)
    return CloseCode.INTERNAL_ERROR, "internal error"
