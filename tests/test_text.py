"""Positions across UTF-16, code points and UTF-8, and minimal text replacement."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Text

from collab_server.positions import (
    PositionError,
    index_from_line_column,
    index_from_utf16,
    utf8_from_index,
    utf16_from_index,
    utf16_length,
)
from collab_server.rooms.document import new_document, text_of
from collab_server.rooms.text_edit import Edit, replacement_update, text_edits

SAMPLE = "aé😀b\nπx"  # 1, 1, 2 (surrogate pair), 1 UTF-16 units on the first line


def test_utf16_offsets() -> None:
    assert utf16_length(SAMPLE) == 8
    assert index_from_utf16(SAMPLE, 2) == 2  # before the emoji
    assert index_from_utf16(SAMPLE, 4) == 3  # after it
    assert utf16_from_index(SAMPLE, 3) == 4
    assert utf8_from_index(SAMPLE, 3) == 1 + 2 + 4


@pytest.mark.parametrize("offset", [-1, 3, 9])
def test_bad_utf16_offsets(offset: int) -> None:
    with pytest.raises(PositionError):
        index_from_utf16(SAMPLE, offset)  # negative, inside the emoji, past the end


def test_line_and_column() -> None:
    assert index_from_line_column(SAMPLE, 1, 1) == SAMPLE.index("x")
    assert index_from_line_column(SAMPLE, 0, 5) == SAMPLE.index("\n")
    with pytest.raises(PositionError):
        index_from_line_column(SAMPLE, 2, 0)


def test_edits_touch_only_what_changed() -> None:
    old = "def f():\n    return 1\n\n\ndef g():\n    return 2\n"
    new = "def f():\n    return 10\n\n\ndef g():\n    return 2  # two\n"
    edits = text_edits(old, new)
    assert edits == [
        Edit(old.index("1\n") + 1, old.index("1\n") + 1, "0"),
        Edit(old.rindex("2") + 1, old.rindex("2") + 1, "  # two"),
    ]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("", "hello"),
        ("hello", ""),
        ("same", "same"),
        ("aé😀b\nπx", "aé😀Zb\nπ🎉x\n"),
        ("line1\nline2\nline3", "line0\nline1\nline3\nline4"),
        ("x" * 50 + "é", "é" + "x" * 50),
    ],
)
def test_replacement_update_reaches_the_new_text(old: str, new: str) -> None:
    doc = new_document()
    text_of(doc, "codemirror").insert(0, old)
    doc.apply_update(replacement_update(doc.get_update(), "codemirror", new))
    assert str(text_of(doc, "codemirror")) == new


def test_replacement_keeps_a_concurrent_edit_elsewhere() -> None:
    """The REST edit merges like any other client's: a concurrent insert survives it."""
    base = "alpha\nbeta\ngamma\n"
    server = new_document()
    text_of(server, "codemirror").insert(0, base)
    state = server.get_update()
    client: Doc[Text] = Doc()
    client.apply_update(state)
    client_text = client.get("codemirror", type=Text)
    client_text.insert(len("alpha"), "!")  # ASCII: byte and character offsets agree here
    server.apply_update(replacement_update(state, "codemirror", "alpha\nBETA\ngamma\n"))
    server.apply_update(client.get_update())
    assert str(text_of(server, "codemirror")) == "alpha!\nBETA\ngamma\n"
