"""Blame: which person wrote each line of a text, from the room's authorship ranges.

yrs does not say where an item sits in a text, but it says what a transaction changed. So on a
scratch copy of the document, each group of ranges (one author, one span of time) is deleted in
a transaction of its own, and the text's change event tells which bytes were theirs. What is
left at the end was written by nobody the server knows (before authorship was recorded).

A line goes to the author of most of its bytes (an empty line: to the newline that made it), with
the time of its newest bytes; consecutive lines of one author make a run. Groups are bounded
(`MAX_GROUPS`, by widening the span of time a group covers, then by putting the smallest
authors together), so a text costs a bounded number of passes over its pieces.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from collab_server.protocol.varint import write_var_uint
from collab_server.rooms.document import apply_update, new_document, text_of
from persistence import Author, AuthorRange

MAX_GROUPS = 48
SPANS_SECONDS = (60.0, 600.0, 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0, math.inf)


class TextTooLarge(Exception):
    """A text past what is diffed or blamed."""


@dataclass(frozen=True, slots=True)
class BlameRun:
    from_line: int  # 1-based
    to_line: int  # inclusive
    author: Author | None  # None: written before authorship was recorded
    time: datetime | None  # when the newest of these lines' text was written


@dataclass(slots=True)
class _Group:
    author: Author
    time: datetime
    ranges: list[tuple[int, int, int]]  # (client, clock, length)


def blame(
    state: bytes, name: str, ranges: Sequence[AuthorRange], max_bytes: int
) -> tuple[list[BlameRun], int]:
    """The runs of lines of the text `name` in the document `state`, and its number of lines.
    Raises `TextTooLarge` past `max_bytes` of text, `CrdtFailure` if yrs fails on the copy."""
    doc = new_document(state)
    text = text_of(doc, name)
    content = str(text).encode()
    if len(content) > max_bytes:
        raise TextTooLarge(f"texts over {max_bytes} bytes are not blamed")
    groups = _groups(ranges)
    alive = [(0, len(content))]  # byte ranges of the original text still in the copy, in order
    pieces: list[tuple[int, int, int]] = []  # (start, end, group) of the original text
    changes: list[list[dict[str, Any]]] = []
    # `delta` is a slot pycrdt fills (its stubs do not declare it).
    subscription = text.observe(lambda event: changes.append(cast(Any, event).delta))
    try:
        for index, group in enumerate(groups):
            changes.clear()
            apply_update(doc, _deleting(group.ranges))
            for delta in changes:
                alive = _cut(alive, delta, index, pieces)
    finally:
        text.unobserve(subscription)
    pieces.sort()
    lines = _line_owners(content, pieces, groups)
    return _runs(lines), len(lines)


def _groups(ranges: Sequence[AuthorRange]) -> list[_Group]:
    """The ranges by author and span of time: the narrowest span that makes at most
    `MAX_GROUPS` groups; past that, by author, the smallest ones together."""
    for span in SPANS_SECONDS:
        grouped: dict[tuple[Author, float], _Group] = {}
        for found in ranges:
            key = (found.author, found.time.timestamp() // span if span < math.inf else 0.0)
            group = grouped.get(key)
            if group is None:
                grouped[key] = _Group(found.author, found.time, [])
            elif found.time > group.time:
                group.time = found.time
            grouped[key].ranges.append((found.client, found.clock, found.length))
            if len(grouped) > MAX_GROUPS:
                break
        else:
            return list(grouped.values())
    return _fewest_groups(ranges)


def _fewest_groups(ranges: Sequence[AuthorRange]) -> list[_Group]:
    by_author: dict[Author, _Group] = {}
    for found in ranges:
        group = by_author.setdefault(found.author, _Group(found.author, found.time, []))
        group.time = max(group.time, found.time)
        group.ranges.append((found.client, found.clock, found.length))
    largest = sorted(by_author.values(), key=lambda g: -sum(r[2] for r in g.ranges))
    kept, rest = largest[: MAX_GROUPS - 1], largest[MAX_GROUPS - 1 :]
    others = _Group(
        Author(f"{len(rest)} others", self_declared=True),
        max(group.time for group in rest),
        [found for group in rest for found in group.ranges],
    )
    return [*kept, others]


def _deleting(ranges: Iterable[tuple[int, int, int]]) -> bytes:
    """An update that deletes these items: no structs, a delete set."""
    by_client: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for client, clock, length in ranges:
        by_client[client].append((clock, length))
    out = bytearray(b"\x00")
    out += write_var_uint(len(by_client))
    for client in sorted(by_client):
        spans = sorted(by_client[client])
        out += write_var_uint(client) + write_var_uint(len(spans))
        for clock, length in spans:
            out += write_var_uint(clock) + write_var_uint(length)
    return bytes(out)


def _cut(
    alive: list[tuple[int, int]],
    delta: list[dict[str, Any]],
    group: int,
    pieces: list[tuple[int, int, int]],
) -> list[tuple[int, int]]:
    """Apply a change (retains and deletes, in bytes of the copy's text) to `alive`; what was
    deleted goes to `pieces` as the group's."""
    remaining = iter(alive)
    kept: list[tuple[int, int]] = []
    start = end = 0
    for op in delta:
        keep = "retain" in op
        count = int(op["retain"] if keep else op.get("delete", 0))
        while count:
            if start == end:
                start, end = next(remaining)
            step = min(count, end - start)
            if keep:
                kept.append((start, start + step))
            else:
                pieces.append((start, start + step, group))
            start += step
            count -= step
    if start < end:
        kept.append((start, end))
    kept.extend(remaining)
    return kept


@dataclass(frozen=True, slots=True)
class _Owner:
    author: Author | None
    time: datetime | None


def _line_owners(
    content: bytes, pieces: list[tuple[int, int, int]], groups: list[_Group]
) -> list[_Owner]:
    """Each line's author (of most of its bytes) and time (of its newest)."""
    starts = [0] + [newline.end() for newline in re.finditer(b"\n", content)]
    owners = []
    first = 0  # the first piece that may reach into the current line
    for number, line_start in enumerate(starts):
        line_end = starts[number + 1] - 1 if number + 1 < len(starts) else len(content)
        low, high = line_start, line_end
        if low == high:  # an empty line: the newline that made it
            low, high = (low - 1, low) if low else (low, min(low + 1, len(content)))
        while first < len(pieces) and pieces[first][1] <= low:
            first += 1
        written: dict[Author, int] = defaultdict(int)
        newest: datetime | None = None
        at = first
        while at < len(pieces) and pieces[at][0] < high:
            start, end, index = pieces[at]
            group = groups[index]
            written[group.author] += min(high, end) - max(low, start)
            newest = group.time if newest is None else max(newest, group.time)
            at += 1
        unknown = (high - low) - sum(written.values())
        author = max(written, key=written.__getitem__) if written else None
        if author is not None and unknown > written[author]:
            author = None
        owners.append(_Owner(author, newest))
    return owners


def _runs(owners: list[_Owner]) -> list[BlameRun]:
    runs: list[BlameRun] = []
    for number, owner in enumerate(owners, start=1):
        last = runs[-1] if runs else None
        if last is not None and last.author == owner.author:
            times = [t for t in (last.time, owner.time) if t is not None]
            runs[-1] = BlameRun(last.from_line, number, last.author, max(times, default=None))
        else:
            runs.append(BlameRun(number, number, owner.author, owner.time))
    return runs
