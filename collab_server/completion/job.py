"""What a completion worker is asked and what it answers: frozen and picklable.

Positions here are code point indices into the Python string; the transport converts them from and
to the UTF-16 offsets editors use.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

MAX_ITEMS = 50

# CodeMirror's completion types (its `cm-completionIcon-*` classes); "namespace" is its module.
ItemKind = Literal[
    "class",
    "constant",
    "function",
    "keyword",
    "method",
    "namespace",
    "property",
    "text",
    "variable",
]
Provider = Literal["jedi", "generic", "none"]


@dataclass(frozen=True, slots=True)
class Item:
    label: str
    kind: ItemKind
    insert_text: str  # replaces the range [from, to) of the answer
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Job:
    text: str
    index: int  # the cursor
    language: str  # a language id; unknown ids get the generic provider without keywords
    key: str  # stable per room and text, so a worker can keep that document's parse around
    deadline: float  # time.monotonic() when the answer is due (the clock is system-wide)
    jedi_deadline: float  # when jedi must have answered, leaving time for the generic fallback


@dataclass(frozen=True, slots=True)
class Completions:
    start: int  # the range the items replace: the word before the cursor
    end: int
    items: tuple[Item, ...] = ()
    provider: Provider = "none"
    partial: bool = False  # some of the document or some provider was left out
    notes: tuple[str, ...] = field(default=())  # why it is partial, for logs and benchmarks

    def degraded(self, note: str) -> Completions:
        return replace(self, partial=True, notes=(*self.notes, note))
