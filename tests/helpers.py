"""What several test modules do alike, written once.

A room's text over REST (compared, read, written into a new room with a language), the labels of
a completion answer, the bearer header for a token, lengths as JavaScript counts them, and the
updates of someone typing.
"""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

import httpx
from pycrdt import Doc, Text

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
