"""Completion for any language: its keywords plus the identifiers of the document.

Candidates are ranked by how they match what was typed (case-sensitive prefix, any-case prefix,
substring), then by how often they occur and how close the nearest occurrence is to the cursor.
A large document is scanned only in a window around the cursor, and the answer says so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from collab_server.completion.job import MAX_ITEMS, Completions, Item, ItemKind
from collab_server.completion.keywords import CASE_INSENSITIVE, keywords_of

SCAN_WINDOW = 128 * 1024  # characters around the cursor scanned for identifiers
WORD_LOOKBEHIND = 256  # the longest word before the cursor taken as what was typed
UNSEEN_DISTANCE_COST = 3.0  # a keyword absent from the text ranks like one 1,000 chars away


@dataclass(frozen=True, slots=True)
class _Syntax:
    token: re.Pattern[str]  # one identifier
    word_char: re.Pattern[str]  # a character that may be part of one
    typed: bool  # identifiers are code (variable/function) rather than prose (text)


_CODE = _Syntax(re.compile(r"[^\W\d]\w*"), re.compile(r"\w"), typed=True)
_SYNTAX = {
    "javascript": _Syntax(re.compile(r"(?:[^\W\d]|\$)[\w$]*"), re.compile(r"[\w$]"), typed=True),
    "css": _Syntax(re.compile(r"-{0,2}[^\W\d][\w-]*"), re.compile(r"[\w-]"), typed=False),
    "html": _Syntax(re.compile(r"[^\W\d][\w-]*"), re.compile(r"[\w-]"), typed=False),
    "markdown": _Syntax(_CODE.token, _CODE.word_char, typed=False),
    "plaintext": _Syntax(_CODE.token, _CODE.word_char, typed=False),
}
_SYNTAX["typescript"] = _SYNTAX["javascript"]


def _syntax(language: str) -> _Syntax:
    return _SYNTAX.get(language, _CODE)


def word_start(text: str, index: int, language: str) -> int:
    """Where the word that ends at `index` begins (`index` itself when there is none)."""
    word_char = _syntax(language).word_char
    start = index
    limit = max(0, index - WORD_LOOKBEHIND)
    while start > limit and word_char.match(text, start - 1):
        start -= 1
    return start


@dataclass(slots=True)
class _Seen:
    count: int
    distance: int  # from the cursor to the nearest occurrence, in characters
    calls: int  # occurrences followed by "("


def _match_tier(label: str, prefix: str, folded_prefix: str) -> int | None:
    if label.startswith(prefix):
        return 0
    folded = label.casefold()
    if folded.startswith(folded_prefix):
        return 1
    if folded_prefix in folded:
        return 2
    return None


def _score(count: int, distance: float) -> float:
    return math.log2(1 + count) - math.log10(1 + distance)


def complete_generic(text: str, index: int, language: str) -> Completions:
    """Keywords and identifiers for the word before `index`, best first."""
    syntax = _syntax(language)
    start = word_start(text, index, language)
    prefix = text[start:index]
    folded_prefix = prefix.casefold()
    after_dot = start > 0 and text[start - 1] == "."

    low = max(0, index - SCAN_WINDOW // 2)
    high = min(len(text), low + SCAN_WINDOW)
    low = max(0, high - SCAN_WINDOW)
    seen: dict[str, _Seen] = {}
    for match in syntax.token.finditer(text, low, high):
        word = match.group()
        if len(word) < 2 or match.start() == start or folded_prefix not in word.casefold():
            continue  # too short, the word being typed itself, or no match at all
        distance = abs(match.start() - index)
        called = text.startswith("(", match.end())
        entry = seen.get(word)
        if entry is None:
            seen[word] = _Seen(1, distance, int(called))
        else:
            entry.count += 1
            entry.distance = min(entry.distance, distance)
            entry.calls += called

    ranked: list[tuple[int, float, str, Item]] = []
    keywords = () if after_dot else keywords_of(language)
    keyword_labels = set()
    for keyword in keywords:
        label = keyword
        if language in CASE_INSENSITIVE and prefix[:1].islower():
            label = keyword.lower()
        tier = _match_tier(label, prefix, folded_prefix)
        if tier is None:
            continue
        if language in CASE_INSENSITIVE and tier == 1:
            tier = 0
        keyword_labels.add(label)
        entry = seen.get(keyword) or seen.get(label)
        score = _score(entry.count, entry.distance) if entry is not None else -UNSEEN_DISTANCE_COST
        ranked.append((tier, -score, label, Item(label, "keyword", label, "keyword")))
    for word, entry in seen.items():
        if word in keyword_labels or word in keywords:
            continue
        tier = _match_tier(word, prefix, folded_prefix)
        if tier is None:
            continue
        kind = _identifier_kind(syntax, entry, after_dot)
        score = _score(entry.count, entry.distance)
        ranked.append((tier, -score, word, Item(word, kind, word, "in document")))
    ranked.sort(key=lambda candidate: candidate[:3])
    answer = Completions(
        start, index, tuple(item for *_, item in ranked[:MAX_ITEMS]), provider="generic"
    )
    if low > 0 or high < len(text):
        answer = answer.degraded(f"scanned {high - low} of {len(text)} characters")
    return answer


def _identifier_kind(syntax: _Syntax, seen: _Seen, after_dot: bool) -> ItemKind:
    if not syntax.typed:
        return "text"
    called = seen.calls * 2 >= seen.count
    if after_dot:
        return "method" if called else "property"
    return "function" if called else "variable"
