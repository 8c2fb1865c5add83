"""What may name a room: printable text as clients put it in a URL, and nothing a URL changes."""

from __future__ import annotations

import pytest

from collab_server.rooms.ids import MAX_ROOM_ID_CHARS, is_text_name, room_id_problem


@pytest.mark.parametrize(
    "room",
    [
        "team/app:src/main.py",
        "test-@y/websocket",  # upstream y-websocket's own test room
        "my room",
        "été/straße",
        "👨‍👩‍👧 family",  # zero-width joiners are format characters, and printable together
        "a" * MAX_ROOM_ID_CHARS,
        "x.y",
        "...",
    ],
)
def test_names_clients_use_are_rooms(room: str) -> None:
    assert room_id_problem(room) is None


@pytest.mark.parametrize(
    ("room", "reason"),
    [
        ("", "empty"),
        ("a" * (MAX_ROOM_ID_CHARS + 1), "longer than 256"),
        (" lead", "white space"),
        ("trail\t", "white space"),
        ("a?b", "'?'"),
        ("a#b", "'#'"),
        ("100%", "'%'"),
        ("a\\b", "'\\\\'"),
        ("a\nb", "U+000A"),
        ("a\x00b", "U+0000"),
        ("a\u2028b", "U+2028"),
        ("abc\u202etxt.exe", "U+202E"),
        ("\ue000", "U+E000"),
        ("a//b", "segment"),
        ("/a", "segment"),
        ("a/", "segment"),
        (".", "segment"),
        ("..", "segment"),
        ("a/../b", "segment"),
        ("a/./b", "segment"),
    ],
)
def test_what_a_url_would_change_is_refused_with_the_reason(room: str, reason: str) -> None:
    problem = room_id_problem(room)
    assert problem is not None
    assert reason in problem


def test_text_names_stay_simple() -> None:
    assert is_text_name("codemirror")
    assert not is_text_name("a/b")
    assert not is_text_name("meta")
