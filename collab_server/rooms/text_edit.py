"""Replacing a shared text by a minimal set of edits, so that cursors elsewhere survive."""

from __future__ import annotations

from dataclasses import dataclass
from difflib import SequenceMatcher

from collab_server.positions import utf8_from_index
from collab_server.rooms.document import new_document, text_of


@dataclass(frozen=True, slots=True)
class Edit:
    start: int  # code point indices into the old text
    end: int
    insert: str


def text_edits(old: str, new: str) -> list[Edit]:
    """Edits that turn `old` into `new`, in ascending order, touching as little as they can.

    Lines are matched first (cheap on large files), then each changed block is trimmed to the
    characters that really differ.
    """
    if old == new:
        return []
    old_lines = old.splitlines(keepends=True)
    new_lines = new.splitlines(keepends=True)
    old_starts = _line_starts(old_lines)
    new_starts = _line_starts(new_lines)
    edits = []
    matcher = SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        edit = _trimmed(old, old_starts[i1], old_starts[i2], new[new_starts[j1] : new_starts[j2]])
        if edit is not None:
            edits.append(edit)
    return edits


def _line_starts(lines: list[str]) -> list[int]:
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    return starts


def _trimmed(old: str, start: int, end: int, insert: str) -> Edit | None:
    removed = old[start:end]
    prefix = 0
    limit = min(len(removed), len(insert))
    while prefix < limit and removed[prefix] == insert[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < limit - prefix
        and removed[len(removed) - 1 - suffix] == insert[len(insert) - 1 - suffix]
    ):
        suffix += 1
    if prefix == len(removed) == len(insert):
        return None
    return Edit(start + prefix, end - suffix, insert[prefix : len(insert) - suffix])


def replacement_update(state: bytes, name: str, new: str) -> bytes:
    """An update that turns the text `name` of the document `state` into `new`.

    It is computed on a scratch copy, so the live document only ever receives it through the
    same store-then-apply path as a client's update.
    """
    scratch = new_document(state)
    text = text_of(scratch, name)
    old = str(text)
    before = scratch.get_state()
    with scratch.transaction():
        for edit in reversed(text_edits(old, new)):  # from the end, so offsets stay valid
            start = utf8_from_index(old, edit.start)
            end = utf8_from_index(old, edit.end)
            if end > start:
                del text[start:end]
            if edit.insert:
                text.insert(start, edit.insert)
    return scratch.get_update(before)
