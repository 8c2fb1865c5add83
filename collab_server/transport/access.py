"""Who is asking: the token of a request or WebSocket, checked against what it wants to do."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from collab_server.auth import Forbidden, Grant, Role, Unauthenticated, bearer_token
from collab_server.transport.errors import ApiError
from collab_server.transport.services import services


def connection_grant(connection: HTTPConnection, *, allow_query: bool = False) -> Grant:
    """What the connection's token allows; raises `Unauthenticated`.

    Browsers cannot set headers on a WebSocket, so there (`allow_query`) the token may also come
    as `?token=`, which is where y-websocket's `params` put it.
    """
    token = bearer_token(connection.headers.get("authorization"))
    if token is None and allow_query:
        token = connection.query_params.get("token")
    return services(connection).auth.grant(token)


def authenticated(connection: HTTPConnection) -> Grant:
    """What the request's token allows; 401 when it has none or one that is not valid."""
    try:
        return connection_grant(connection)
    except Unauthenticated as error:
        raise ApiError(401, "unauthorized", str(error), {"WWW-Authenticate": "Bearer"}) from error


def permit(grant: Grant, role: Role, room_id: str | None = None) -> None:
    """403 unless `grant` gives `role` on `room_id` (None: on every room)."""
    try:
        grant.require(role, room_id)
    except Forbidden as error:
        raise ApiError(403, "forbidden", str(error)) from error


def require(connection: HTTPConnection, role: Role, room_id: str | None = None) -> Grant:
    """The request's grant if it gives `role` on `room_id` (None: every room); else 401 or 403."""
    grant = authenticated(connection)
    permit(grant, role, room_id)
    return grant
