"""What several test modules do alike, written once.

A room's text over REST (compared, read, written into a new room with a language), the labels of
a completion answer, the bearer header for a token, lengths as JavaScript counts them, the updates
of someone typing and the text a client makes of the messages it was sent, and a fake connection
for a `Peer` that records what it was sent and how it was closed (unit tests with no server).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any
from urllib.parse import quote

import anyio
import httpx
from pycrdt import Doc, Text

from collab_server.protocol import SyncStep2, SyncUpdate, decode_message
from collab_server.rooms.peer import Peer, WriteFrame
from tests.conftest import RunningServer

_fresh_rooms = itertools.count()


# -- REST -------------------------------------------------------------------------------------


def text_path(room: str) -> str:
    """The REST path of a room's text (the id as one percent-encoded segment)."""
    return f"/api/rooms/{quote(room, safe='')}/text"


async def text_is(http: httpx.AsyncClient, room: str, expected: str) -> bool:
    """Whether the room's text over REST is `expected` now: for `poll`, so an error status is
    false, not an exception."""
    answer = await http.get(text_path(room))
    return answer.status_code == 200 and answer.text == expected


async def server_text(server: RunningServer, room: str) -> str:
    """The room's text over REST; raises on an error status."""
    async with server.http() as http:
        response = await http.get(text_path(room))
    response.raise_for_status()
    return response.text


async def room_with(
    http: httpx.AsyncClient, language: str, text: str, *, room: str | None = None
) -> str:
    """Create a room in `language` holding `text` (a fresh id unless `room` names one); its id."""
    room = f"c{next(_fresh_rooms)}" if room is None else room
    created = await http.post("/api/rooms", json={"id": room, "language": language})
    assert created.status_code == 201, created.text
    written = await http.put(text_path(room), content=text.encode())
    assert written.status_code == 200, written.text
    return room


def labels(answer: dict[str, Any]) -> list[str]:
    """The labels of a completion answer's items, in order."""
    return [item["label"] for item in answer["items"]]


def bearer(token: str) -> dict[str, str]:
    """The header that carries an access token on a REST call."""
    return {"Authorization": f"Bearer {token}"}


# -- text and updates -------------------------------------------------------------------------


def utf16_length(text: str) -> int:
    """Length as JavaScript counts it (computed here, not with the server's own helper)."""
    return len(text.encode("utf-16-le")) // 2


def keystrokes(name: str, text: str) -> list[bytes]:
    """The updates of someone typing `text` into the shared text `name`, one per character."""
    doc: Doc[Text] = Doc()
    shared = doc.get(name, type=Text)
    updates = []
    for char in text:
        before = doc.get_state()
        shared += char
        updates.append(doc.get_update(before))
    return updates


def text_of(frames: list[bytes], name: str = "codemirror") -> str:
    """The text `name` a client holds after applying the updates among `frames` (messages as
    sent on the socket; the others are skipped)."""
    doc: Doc[Text] = Doc()
    for frame in frames:
        message = decode_message(frame)
        if isinstance(message, SyncUpdate | SyncStep2):
            doc.apply_update(message.update)
    return str(doc.get(name, type=Text))


# -- a peer without a socket ------------------------------------------------------------------


class FakeSocket:
    """The send and close callables a `Peer` is given, recording what they were called with.

    Clear `gate` to hold sends where they are (a client that reads slowly); `sending` is set
    once a send waits there. A send raises `error` when one is set (a client gone, a bug)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.closed: list[tuple[int, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.sending = asyncio.Event()
        self.error: Exception | None = None
        self._changed = asyncio.Event()

    def peer(
        self,
        room: str = "room",
        *,
        queue_limit: int = 100,
        queue_bytes_limit: int = 16 * 1024 * 1024,
        write_now: WriteFrame | None = None,
    ) -> Peer:
        """A peer of `room` that sends and closes through this socket."""
        return Peer(
            room,
            self.send,
            self.close,
            queue_limit=queue_limit,
            queue_bytes_limit=queue_bytes_limit,
            write_now=write_now,
        )

    async def send(self, frame: bytes) -> None:
        self.sending.set()
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        self.sent.append(frame)
        self._changed.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed.append((code, reason))
        self._changed.set()

    async def wait_sent(self, count: int, seconds: float = 5) -> None:
        """Wait until `count` frames have been sent in all."""
        with anyio.fail_after(seconds):
            while len(self.sent) < count:
                self._changed.clear()
                await self._changed.wait()
