"""Replacing a shared text by a minimal set of edits, so that cursors elsewhere survive.

The diff runs on the event loop, so its work is bounded by the size of the input whatever the
input is: the common start and end are cut off by comparing slices (in C), lines that occur once
in both texts anchor the rest (patience diff, O(n log n)), and Myers' O(ND) algorithm matches
the lines between two anchors within a budget of steps per line. A stretch whose diff runs past
its budget is replaced in one edit: more is rewritten than needed, never anything wrong.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from itertools import accumulate

from collab_server.rooms.document import SERVER_CLIENT_ID, meta_of, new_document, text_of

# Past this many differing code points (old and new together, once the common start and end are
# cut off) the middle is replaced in one edit without looking at its lines. Splitting and
# anchoring lines is linear, but at worst (lines of one character and a newline) it costs about
# 0.3 s at this size on a 2-core machine (bench/RESULTS-text-diff.md). A 2 MB file edited all
# over is still diffed line by line; REST bodies are at most `max_message_bytes` (8 MiB).
MAX_DETAILED_CHARS = 4 * 1024 * 1024
# Myers' steps (diagonals visited plus lines compared) allowed per line of a stretch between two
# anchors: a stretch of s lines fits if its shortest edit script changes up to about sqrt(30 s)
# lines. That covers the edits people make, not a rewrite of every other line of a long file.
STEPS_PER_LINE = 16
# And over the whole text: about 0.2 s of Myers on a 2-core machine.
MAX_STEPS = 1_000_000

_Block = tuple[int, int, int, int]  # old lines [i1, i2) became new lines [j1, j2)


@dataclass(frozen=True, slots=True)
class Edit:
    start: int  # code point indices into the old text
    end: int
    insert: str


@dataclass(frozen=True, slots=True)
class TextDiff:
    edits: list[Edit]
    steps: int  # Myers' steps: at most STEPS_PER_LINE per line and MAX_STEPS in all
    coarse: int  # stretches replaced whole because their diff ran past its budget


def text_edits(old: str, new: str) -> list[Edit]:
    """Edits that turn `old` into `new`, in ascending order, touching as little as they can."""
    return diff_text(old, new).edits


def diff_text(old: str, new: str) -> TextDiff:
    """`text_edits`, with the work it took.

    Lines are matched first (cheap on large files), then each changed block is trimmed to the
    characters that really differ.
    """
    if old == new:
        return TextDiff([], 0, 0)
    head, old_end, new_end = _differing_lines(old, new)
    if (old_end - head) + (new_end - head) > MAX_DETAILED_CHARS:
        edit = _trimmed(old, head, old_end, new[head:new_end])
        return TextDiff([] if edit is None else [edit], 0, 1)
    old_lines = old[head:old_end].splitlines(keepends=True)
    new_lines = new[head:new_end].splitlines(keepends=True)
    old_starts = list(accumulate(map(len, old_lines), initial=head))
    new_starts = list(accumulate(map(len, new_lines), initial=head))
    blocks, steps, coarse = _line_blocks(old_lines, new_lines)
    edits: list[Edit] = []
    for i1, i2, j1, j2 in blocks:
        edit = _trimmed(old, old_starts[i1], old_starts[i2], new[new_starts[j1] : new_starts[j2]])
        if edit is not None:
            edits.append(edit)
    return TextDiff(edits, steps, coarse)


def changed_lines(
    old: str, new: str
) -> tuple[list[str], list[str], list[tuple[int, int, int, int]]]:
    """Both texts' lines, and the blocks that differ: old lines [i1, i2) became new lines
    [j1, j2), in order, found within the same budget as `text_edits` (a stretch past it is one
    block). What a line diff (`GET …/diff`) is made of."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    blocks, _, _ = _line_blocks(a[head : len(a) - tail], b[head : len(b) - tail])
    return a, b, [(i1 + head, i2 + head, j1 + head, j2 + head) for i1, i2, j1, j2 in blocks]


def _differing_lines(old: str, new: str) -> tuple[int, int, int]:
    """Where the lines that differ start (in both) and end (in old, in new).

    The common start and end are cut at line starts, so that a changed line is matched whole
    and a deleted line is deleted from its start, as an editor would, not from the middle of
    the line before it.
    """
    shared = min(len(old), len(new))
    prefix = _common_length(old, new, shared)
    suffix = _common_length(old, new, shared - prefix, from_end=True)
    head = old.rfind("\n", 0, prefix) + 1
    old_end, new_end = len(old) - suffix, len(new) - suffix
    if suffix and not (_line_starts_at(old, old_end) and _line_starts_at(new, new_end)):
        newline = old.find("\n", old_end)
        step = suffix if newline < 0 else newline + 1 - old_end
        old_end, new_end = old_end + step, new_end + step
    return head, old_end, new_end


def _line_blocks(a: list[str], b: list[str]) -> tuple[list[_Block], int, int]:
    """The changed blocks of lines, the Myers steps spent, and how many stretches were coarse."""
    blocks: list[_Block] = []
    steps = coarse = 0
    i = j = 0
    for next_i, next_j in [*_unique_anchors(a, b), (len(a), len(b))]:
        old_part, new_part = a[i:next_i], b[j:next_j]
        if old_part == new_part:
            pass
        elif old_part and new_part:
            lines = len(old_part) + len(new_part)
            # Myers may pass its budget by one diagonal: a step and fewer than `lines` more.
            budget = min((STEPS_PER_LINE - 1) * lines, MAX_STEPS - steps - lines)
            found, spent = _myers(old_part, new_part, budget)
            steps += spent
            if found is None:
                coarse += 1
                blocks.append((i, next_i, j, next_j))
            else:
                blocks.extend((i + i1, i + i2, j + j1, j + j2) for i1, i2, j1, j2 in found)
        else:
            blocks.append((i, next_i, j, next_j))
        i, j = next_i + 1, next_j + 1
    return blocks, steps, coarse


def _line_starts_at(text: str, index: int) -> bool:
    return index == 0 or text[index - 1] == "\n"


def _unique_anchors(a: list[str], b: list[str]) -> list[tuple[int, int]]:
    """Pairs (i, j) with a[i] == b[j] occurring once in each: the longest chain of them in order."""
    count_b = Counter(b)
    once = {line for line, count in Counter(a).items() if count == 1 and count_b[line] == 1}
    if not once:
        return []
    where_a = {line: i for i, line in enumerate(a) if line in once}
    pairs = [(where_a[line], j) for j, line in enumerate(b) if line in once]
    # Longest increasing run of i over pairs in j order, by patience sorting.
    tails: list[int] = []  # per chain length, the smallest i that ends such a chain
    tail_pair: list[int] = []  # and which pair that is
    before: list[int] = []  # per pair, the pair before it in its chain (-1: none)
    for index, (i, _) in enumerate(pairs):
        length = bisect_left(tails, i)
        if length == len(tails):
            tails.append(i)
            tail_pair.append(index)
        else:
            tails[length] = i
            tail_pair[length] = index
        before.append(tail_pair[length - 1] if length else -1)
    chain: list[tuple[int, int]] = []
    index = tail_pair[-1] if tail_pair else -1
    while index >= 0:
        chain.append(pairs[index])
        index = before[index]
    chain.reverse()
    return chain


def _myers(a: list[str], b: list[str], budget: int) -> tuple[list[_Block] | None, int]:
    """The changed blocks of a shortest edit script from `a` to `b` (Myers 1986), and the steps
    spent; no blocks if that took more than `budget` steps (plus at most one diagonal's)."""
    if budget <= 0:
        return None, 0
    n, m = len(a), len(b)
    offset = n + m + 1
    v = [0] * (2 * offset + 1)  # per diagonal k = x - y, the furthest x reached
    trace: list[list[int]] = []  # v after each cost d, for diagonals -d, -d + 2, ..., d
    steps = 0
    for d in range(n + m + 1):
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[offset + k - 1] < v[offset + k + 1]):
                x = v[offset + k + 1]  # down: insert b[y - 1]
            else:
                x = v[offset + k - 1] + 1  # right: delete a[x - 1]
            y = x - k
            start = x
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[offset + k] = x
            steps += 1 + x - start
            if x >= n and y >= m:
                trace.append(v[offset - d : offset + d + 1 : 2])
                return _blocks(trace, n, m), steps
            if steps > budget:
                return None, steps
        trace.append(v[offset - d : offset + d + 1 : 2])
    raise AssertionError("unreachable: n + m steps always reach the end")


def _blocks(trace: list[list[int]], n: int, m: int) -> list[_Block]:
    """Walk the path back from (n, m), merging the moves that no common line separates."""
    blocks: list[_Block] = []  # from the end
    x, y = n, m
    for d in range(len(trace) - 1, 0, -1):
        previous = trace[d - 1]  # diagonal k is at (k + d - 1) // 2
        k = x - y
        down = k == -d or (k != d and previous[(k - 2 + d) // 2] < previous[(k + d) // 2])
        k_before = k + 1 if down else k - 1
        x_before = previous[(k_before + d - 1) // 2]
        y_before = x_before - k_before
        x_moved, y_moved = (x_before, y_before + 1) if down else (x_before + 1, y_before)
        if blocks and blocks[-1][0] == x_moved and blocks[-1][2] == y_moved:
            blocks[-1] = (x_before, blocks[-1][1], y_before, blocks[-1][3])
        else:
            blocks.append((x_before, x_moved, y_before, y_moved))
        x, y = x_before, y_before
    blocks.reverse()
    return blocks


def _common_length(a: str, b: str, limit: int, *, from_end: bool = False) -> int:
    """How many characters `a` and `b` share at the start (or end), at most `limit`.

    Slices of doubling size are compared in C, then the differing one is bisected: O(n) work
    in C rather than a Python loop over characters, which takes seconds on megabytes.
    """

    def same(lo: int, hi: int) -> bool:
        if from_end:
            return a[len(a) - hi : len(a) - lo] == b[len(b) - hi : len(b) - lo]
        return a[lo:hi] == b[lo:hi]

    done, size = 0, 64
    while done < limit:
        end = min(done + size, limit)
        if not same(done, end):
            while end - done > 1:  # a[:done] is shared, a[done:end] is not
                middle = (done + end) // 2
                if same(done, middle):
                    done = middle
                else:
                    end = middle
            return done
        done, size = end, size * 2
    return done


def _trimmed(old: str, start: int, end: int, insert: str) -> Edit | None:
    removed = old[start:end]
    shared = min(len(removed), len(insert))
    prefix = _common_length(removed, insert, shared)
    if prefix == len(removed) == len(insert):
        return None
    suffix = _common_length(removed, insert, shared - prefix, from_end=True)
    return Edit(start + prefix, end - suffix, insert[prefix : len(insert) - suffix])


def replacement_update(state: bytes, name: str, new: str) -> bytes:
    """An update that turns the text `name` of the document `state` into `new`.

    It is computed on a scratch copy, so the live document only ever receives it through the
    same store-then-apply path as a client's update.
    """
    return restoration_update(state, {name: new})


def restoration_update(
    state: bytes, texts: dict[str, str], meta: dict[str, object] | None = None
) -> bytes:
    """One update, one transaction, that turns each text named in `texts` into its new value
    by minimal edits, and (if given) makes the `meta` map hold exactly `meta` (a restore)."""
    scratch = new_document(state, client_id=SERVER_CLIENT_ID)
    edits = {name: _byte_spans(str(text_of(scratch, name)), new) for name, new in texts.items()}
    before = scratch.get_state()
    with scratch.transaction():
        for name, spans in edits.items():
            text = text_of(scratch, name)
            for start, end, insert in reversed(spans):  # from the end, so offsets stay valid
                if end > start:
                    del text[start:end]
                if insert:
                    text.insert(start, insert)
        if meta is not None:
            settings = meta_of(scratch)
            for key in [key for key in settings.keys() if key not in meta]:
                del settings[key]
            for key, value in meta.items():
                if key not in settings or settings[key] != value:
                    settings[key] = value
    return scratch.get_update(before)


def _byte_spans(old: str, new: str) -> list[tuple[int, int, str]]:
    """`text_edits` in UTF-8 byte offsets, as pycrdt counts."""
    # Every edit converted in one pass, not one encoding per edit of the whole text before it
    # (quadratic when a long file has an edit on every other line).
    spans: list[tuple[int, int, str]] = []
    index = offset = 0
    for edit in text_edits(old, new):
        start = offset + len(old[index : edit.start].encode())
        offset = start + len(old[edit.start : edit.end].encode())
        index = edit.end
        spans.append((start, offset, edit.insert))
    return spans
