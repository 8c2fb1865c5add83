"""Room ids in REST URLs: one percent-encoded path segment, `/` as `%2F` (as GitLab's API does).

`/api/rooms/org%2Fapp%3Amain.py/text` must reach the room `org/app:main.py`, and a room whose
name ends in `/text` must not be mistaken for the text of another. The server decodes the whole
path before routing, which loses where a segment ended; `RoomSegments` routes `/api/rooms/...`
on the path as it was sent instead, and the `room` converter decodes the one segment it matches.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import ASGIApp, Receive, Scope, Send

ROOM_API = "/api/rooms/"


class RoomConvertor(Convertor[str]):
    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


class RoomPathConvertor(Convertor[str]):
    """A whole decoded path, slashes and line breaks too (Starlette's `path` stops at a newline)."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return quote(value, safe="/")


register_url_convertor("room", RoomConvertor())
register_url_convertor("room_path", RoomPathConvertor())
ROOM_PATH = ROOM_API + "{room:room}"  # the route of one room; its parts add to it
ANY_NAME = "{room:room_path}"  # for /ws/ and /r/, where the name follows as the client wrote it


class RoomSegments:
    """Routes `/api/rooms/...` on the path as sent, each segment decoded and re-encoded alone.

    Path parameters under `/api/rooms/` therefore arrive percent-encoded: the `room` converter
    decodes its segment, and nothing else there takes a parameter from the path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_path = scope.get("raw_path") if scope["type"] == "http" else None
        root: str = scope.get("root_path", "")
        if raw_path is not None and scope["path"].startswith(root + ROOM_API):
            raw = raw_path.decode("latin-1")
            sent = raw[len(root) :] if root and raw.startswith(root) else raw
            if sent.startswith(ROOM_API):
                segments = sent[len(ROOM_API) :].split("/")
                kept = "/".join(quote(unquote(segment), safe="") for segment in segments)
                scope = dict(scope)
                scope["path"] = root + ROOM_API + kept
        await self.app(scope, receive, send)
