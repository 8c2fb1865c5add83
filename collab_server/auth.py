"""Access tokens: who may read, edit or administer which rooms.

Off unless `COLLAB_AUTH_SECRET` is set; then every room and API call needs a token. A token is a
JWT signed with that secret (HS256), so a team's own backend can mint them with any JWT library:

    {"room": "*" or a room id, "role": "viewer" | "editor" | "admin", "exp": <optional>,
     "sub": <optional user id>, "name": <optional display name>}

A viewer reads (sync, text, completion) and shows its cursor; an editor also writes and creates
rooms; an admin also deletes them. A token for one room opens that room and no other (the editor
page puts only such a token, below admin, into the links it shares). `sub` and `name` say who holds
it: what they write is attributed to that person (blame), whatever name their editor shows.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"
ALL_ROOMS = "*"
MIN_SECRET_LENGTH = 32  # HS256 wants a key at least as long as its 256-bit hash (RFC 7518)
CLOCK_SKEW_SECONDS = 60  # tokens are minted on other machines: their clocks may be a little ahead


class Role(enum.IntEnum):
    """What a token lets its holder do; each role may do everything the ones below it may."""

    VIEWER = 1
    EDITOR = 2
    ADMIN = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, label: str) -> Role:
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown role {label!r}") from None


class AuthError(Exception):
    """A request this server's access control refuses."""


class Unauthenticated(AuthError):
    """No token, or one this server did not sign, or one that has expired."""


class Forbidden(AuthError):
    """A valid token that does not allow this room or this action."""


@dataclass(frozen=True)
class Grant:
    room: str  # a room id, or ALL_ROOMS
    role: Role
    user: str | None = None  # the token's `sub`: who holds it, if it says
    name: str | None = None  # the token's `name`: how to show them

    def covers(self, room_id: str) -> bool:
        return self.room in (ALL_ROOMS, room_id)

    def require(self, role: Role, room_id: str | None = None) -> None:
        """Raise `Forbidden` unless this grant gives `role` on `room_id` (None: on every room)."""
        if self.role < role:
            raise Forbidden(f"this needs the {role.label} role; the token gives {self.role.label}")
        if room_id is None and self.room != ALL_ROOMS:
            raise Forbidden("this needs a token for every room")
        if room_id is not None and not self.covers(room_id):
            raise Forbidden(f"the token is not for room {room_id!r}")


OPEN = Grant(ALL_ROOMS, Role.ADMIN)  # what everyone may do on a server without a secret


class Authenticator:
    """Checks tokens against the server's secret; with no secret, everyone gets `OPEN`."""

    def __init__(self, secret: str | None) -> None:
        self._secret = secret  # Settings holds it to MIN_SECRET_LENGTH

    def grant(self, token: str | None) -> Grant:
        """What `token` allows; raises `Unauthenticated` when it is missing or not valid."""
        if self._secret is None:
            return OPEN
        if not token:
            raise Unauthenticated("a token is required")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["room", "role"]},
                leeway=CLOCK_SKEW_SECONDS,
            )
        except jwt.ExpiredSignatureError as error:
            raise Unauthenticated("the token has expired") from error
        except jwt.InvalidTokenError as error:
            raise Unauthenticated("the token is not valid") from error
        room, role = claims["room"], claims["role"]
        user, name = claims.get("sub"), claims.get("name")
        if not all(isinstance(value, str) for value in (room, role)):
            raise Unauthenticated("the token's room and role must be strings")
        if not all(value is None or isinstance(value, str) for value in (user, name)):
            raise Unauthenticated("the token's sub and name must be strings")
        try:
            return Grant(room, Role.parse(role), user or None, name or None)
        except ValueError as error:
            raise Unauthenticated(f"the token's role {role!r} is unknown") from error


def mint_token(
    secret: str,
    room: str,
    role: Role,
    ttl_seconds: float | None = None,
    *,
    user: str | None = None,
    name: str | None = None,
) -> str:
    """A token for `room` (or ALL_ROOMS) with `role`, expiring after `ttl_seconds` if given,
    naming its holder (`user` becomes the `sub` claim) if given."""
    claims: dict[str, object] = {"room": room, "role": role.label, "iat": int(time.time())}
    if ttl_seconds is not None:
        claims["exp"] = int(time.time() + ttl_seconds)
    if user:
        claims["sub"] = user
    if name:
        claims["name"] = name
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if that is what it holds."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
