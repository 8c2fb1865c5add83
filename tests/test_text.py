"""Positions across UTF-16, code points and UTF-8, and minimal text replacement."""

from __future__ import annotations

import random
import re

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
from collab_server.rooms.history import unified_diff
from collab_server.rooms.text_edit import (
    MAX_DETAILED_CHARS,
    MAX_STEPS,
    STEPS_PER_LINE,
    Edit,
    diff_text,
    replacement_update,
    text_edits,
)

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


def applied(old: str, edits: list[Edit]) -> str:
    """`old` with `edits` made, after checking they are ascending, non-overlapping and not empty."""
    parts: list[str] = []
    done = 0
    for edit in edits:
        assert done <= edit.start <= edit.end <= len(old), (done, edit)
        assert edit.start < edit.end or edit.insert, edit
        parts += [old[done : edit.start], edit.insert]
        done = edit.end
    return "".join([*parts, old[done:]])


PIECES = ["a\n", "b\n", "c\n", "\n", "x", "é😀\n", "\r\n", "\r", "    return y\n", "def f():\n"]


def random_pair(rng: random.Random) -> tuple[str, str]:
    """Two texts made of few kinds of lines: unrelated, or the second an edit of the first."""
    old = "".join(rng.choices(PIECES, k=rng.choice([0, 1, 5, 30, 300])))
    if rng.random() < 0.3:
        return old, "".join(rng.choices(PIECES, k=rng.choice([0, 1, 5, 30, 300])))
    parts = list(old)
    for _ in range(rng.randint(1, 6)):
        at = rng.randint(0, len(parts))
        parts[at : at + rng.randint(0, 3)] = rng.choices(PIECES, k=rng.randint(0, 3))
    return old, "".join(parts)


def test_random_edits_reach_the_new_text() -> None:
    rng = random.Random(20261201)
    coarse = detailed = 0
    for _ in range(3000):
        old, new = random_pair(rng)
        diff = diff_text(old, new)
        assert applied(old, diff.edits) == new, (old, new)
        assert diff.edits == text_edits(old, new)  # and the same every time
        assert diff.steps <= STEPS_PER_LINE * (len(old.splitlines()) + len(new.splitlines()))
        coarse += diff.coarse > 0
        detailed += diff.coarse == 0
    assert coarse > 10 and detailed > 1000  # both paths were taken


def test_random_replacements_reach_the_new_text() -> None:
    rng = random.Random(7)
    for _ in range(100):
        old, new = random_pair(rng)
        doc = new_document()
        text_of(doc, "codemirror").insert(0, old)
        doc.apply_update(replacement_update(doc.get_update(), "codemirror", new))
        assert str(text_of(doc, "codemirror")) == new, (old, new)


def code_file(functions: int) -> list[str]:
    """Code with many repeated lines, four per function: a diff cannot anchor on most of them."""
    return [
        line
        for index in range(functions)
        for line in (f"def f{index}(x):\n", "    y = x + 1\n", "    return y\n", "\n")
    ]


def test_one_changed_line_in_a_long_file_is_one_small_edit() -> None:
    lines = code_file(250)
    old = "".join(lines)
    at = len("".join(lines[:501])) + len("    y = x + ")  # the "1" of f125
    lines[501] = "    y = x + 2\n"
    assert text_edits(old, "".join(lines)) == [Edit(at, at + 1, "2")]


def test_a_deleted_or_inserted_line_is_one_edit_at_its_start() -> None:
    lines = code_file(250)
    old = "".join(lines)
    blank = len("".join(lines[:503]))  # the blank line after f125
    assert text_edits(old, "".join(lines[:503] + lines[504:])) == [Edit(blank, blank + 1, "")]
    added = "    print(y)\n"
    assert text_edits(old, "".join([*lines[:502], added, *lines[502:]])) == [
        Edit(blank - len("    return y\n"), blank - len("    return y\n"), added)
    ]


@pytest.mark.parametrize("count", [1_000, 25_000])
def test_adversarial_lines_take_bounded_work(count: int) -> None:
    """Every other line inserted into identical lines: quadratic for Myers, worse for difflib."""
    old, new = "x\n" * count, "x\ny\n" * count
    diff = diff_text(old, new)
    assert applied(old, diff.edits) == new
    assert diff.coarse == 1  # the budget ran out, so the differing middle was replaced whole
    lines = len(old.splitlines()) + len(new.splitlines())
    assert 0 < diff.steps <= min(STEPS_PER_LINE * lines, MAX_STEPS)


def test_beyond_the_detailed_size_the_middle_is_replaced_whole() -> None:
    lines = [f"{index:07}\n" for index in range(MAX_DETAILED_CHARS // 16 + 1000)]
    old = "".join(lines)
    new = "".join(["first\n", *lines[1:-1], "last\n"])  # the differing middle is all of it
    diff = diff_text(old, new)
    assert diff.edits == [Edit(0, len(old) - 1, "first\n" + old[8:-8] + "last")]
    assert (diff.coarse, diff.steps) == (1, 0)
    # The size counts what differs: one changed line in the same text is found in detail.
    middle = len(lines) // 2
    changed = "".join([*lines[:middle], "changed\n", *lines[middle + 1 :]])
    assert text_edits(old, changed) == [Edit(middle * 8, middle * 8 + 7, "changed")]


def test_lines_added_around_a_line_leave_it_alone() -> None:
    """The common end is cut at a line start: "return y" is kept, not rewritten."""
    old = "def f():\n    return y\n"
    new = "def f():\n    y = 2\n    return y\n\n"
    start = old.index("    return")
    assert text_edits(old, new) == [
        Edit(start, start, "    y = 2\n"),
        Edit(len(old), len(old), "\n"),
    ]


def test_scattered_edits_in_a_long_file_cost_work_only_where_they_are() -> None:
    """Lines that occur once ("def fN") anchor the diff: Myers only sees the stretches between
    the two anchors around each edit, 4 lines a side, not the 10,000 lines of the file."""
    lines = code_file(2_500)
    old = "".join(lines)
    expected = []
    for changed in range(1, len(lines), 500):  # "    y = x + 1" of every 125th function
        at = len("".join(lines[:changed])) + len("    y = x + ")
        expected.append(Edit(at, at + 1, "2"))
        lines[changed] = "    y = x + 2\n"
    diff = diff_text(old, "".join(lines))
    assert diff.edits == expected
    assert diff.coarse == 0
    assert diff.steps <= STEPS_PER_LINE * 8 * len(expected)


def _patched(old: str, diff: str) -> str:
    """`old` with a unified diff applied, as `patch` would (hunks in order, exact context)."""
    source, out, at = old.splitlines(keepends=True), [], 0
    lines = diff.splitlines(keepends=True)[2:]
    kind = " "
    for line in lines:
        if line.startswith("@@"):
            match = re.match(r"@@ -(\d+)(?:,(\d+))? ", line)
            assert match is not None
            start, length = int(match[1]), int(match[2] or 1)
            begin = start - 1 if length else start
            out += source[at:begin]
            at = begin
        elif line.startswith("\\"):
            if kind != "-":
                out[-1] = out[-1].removesuffix("\n")
        else:
            kind, body = line[0], line[1:]
            if kind in " -":
                assert source[at].removesuffix("\n") == body.removesuffix("\n")
                at += 1
            if kind in " +":
                out.append(body)
    return "".join(out + source[at:])


def test_a_version_diff_applies_back_exactly() -> None:
    rng = random.Random(7)
    pool = ["def f():\n", "    return 1\n", "\n", "# é 🎉 中文\n", "x = 1\n"]
    for _ in range(300):
        old = [rng.choice(pool) for _ in range(rng.randint(0, 40))]
        new = list(old)
        for _ in range(rng.randint(1, 8)):
            where = rng.randint(0, len(new))
            if rng.random() < 0.4 and new:
                del new[min(where, len(new) - 1)]
            else:
                new.insert(where, rng.choice([*pool, "changed\n"]))
        before, after = "".join(old), "".join(new)
        if rng.random() < 0.3:
            after = after.removesuffix("\n")
        diff = unified_diff(before, after, "a", "b")
        assert _patched(before, diff) == after
        if before == after:
            assert diff == ""


def test_a_version_diff_of_adversarial_lines_is_bounded_and_still_right() -> None:
    old = "x\n" * 50_000
    new = "".join("x\n" if n % 2 else "y\n" for n in range(50_000))
    diff = unified_diff(old, new, "a", "b")  # Myers past its budget: one changed block
    assert _patched(old, diff) == new
