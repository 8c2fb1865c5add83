"""Valid updates from real pycrdt documents: random edits of every shared type, one update per
transaction, as an editor would send them.

Only honest input goes into pycrdt in this process: a mutated update could crash it as it
crashes the server.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from pycrdt import (
    Array,
    Doc,
    Map,
    Text,
    TransactionEvent,
    XmlElement,
    XmlFragment,
    XmlText,
    merge_updates,
)

# Text worth typing: ASCII code, accents, CJK, emoji (4 UTF-8 bytes, 2 UTF-16 units), combining
# marks, a ZWJ sequence, a right-to-left mark.
SNIPPETS = [
    "def f(x):\n    return x\n",
    "é",
    "naïve café",
    "漢字かな",
    "😀",
    "👩‍💻",
    "e\u0301",
    "\u200f",
    "\t",
    "}",
    "a",
    "Σ∑",
]
LANGUAGES = ["python", "javascript", "rust", "plaintext", "go"]
ROOT_TEXTS = ["codemirror", "t", "notes"]
ROOT_MAPS = ["meta", "m"]
ROOT_ARRAYS = ["a", "list"]
ROOT_XML = ["xml"]
ROOT_NAMES = [*ROOT_TEXTS, "rich", *ROOT_MAPS, *ROOT_ARRAYS, *ROOT_XML]


@dataclass
class Session:
    """The updates of one editing session, in the order they were made."""

    client_id: int
    updates: list[bytes] = field(default_factory=list)


def _scalar(rng: random.Random) -> Any:
    return rng.choice(
        [
            None,
            True,
            False,
            rng.randrange(-(2**31), 2**31),
            rng.random() * 1e6,
            rng.choice(SNIPPETS),
            "",
            [1, "two", None],
            {"k": [1, {"x": "y"}], "n": 0.5},
        ]
    )


def _utf8_offset(text: str, rng: random.Random) -> int:
    """A byte offset at a character boundary (pycrdt Text counts UTF-8 bytes)."""
    index = rng.randint(0, len(text))
    return len(text[:index].encode())


class _Editor:
    def __init__(self, doc: Doc[Any], rng: random.Random) -> None:
        self.doc = doc
        self.rng = rng

    def edit(self) -> None:
        rng = self.rng
        action = rng.choice(
            [self._text, self._text, self._text, self._map, self._array, self._xml, self._nested]
        )
        with self.doc.transaction():
            for _ in range(rng.choice([1, 1, 1, 2, 5])):
                action()

    def _text(self) -> None:
        rng = self.rng
        text = self.doc.get(rng.choice(ROOT_TEXTS), type=Text)
        current = str(text)
        choice = rng.random()
        if choice < 0.6 or not current:
            attrs = {"bold": True} if rng.random() < 0.1 else None
            text.insert(_utf8_offset(current, rng), rng.choice(SNIPPETS), attrs)
        elif choice < 0.85:
            start = _utf8_offset(current, rng)
            stop = max(start, _utf8_offset(current, rng))
            if stop > start:
                del text[start:stop]
        elif choice < 0.95:
            start = _utf8_offset(current, rng)
            stop = max(start, _utf8_offset(current, rng))
            if stop > start:
                text.format(start, stop, {"italic": rng.random() < 0.5, "href": "x"})
        else:
            # Embeds are not in str(text), so they go to a text whose offsets are not computed.
            rich = self.doc.get("rich", type=Text)
            rich.insert_embed(rng.choice([0, len(rich)]), {"image": "x.png", "w": 3})

    def _map(self) -> None:
        rng = self.rng
        name = rng.choice(ROOT_MAPS)
        target = self.doc.get(name, type=Map)
        if name == "meta" and rng.random() < 0.5:
            target["language"] = rng.choice(LANGUAGES)
        elif rng.random() < 0.2 and len(target):
            del target[rng.choice(list(target.keys()))]
        else:
            target[rng.choice(["a", "b", "c", "ключ", "😀", ""])] = _scalar(rng)

    def _array(self) -> None:
        rng = self.rng
        target = self.doc.get(rng.choice(ROOT_ARRAYS), type=Array)
        if rng.random() < 0.2 and len(target):
            del target[rng.randrange(len(target))]
        else:
            target.insert(rng.randint(0, len(target)), _scalar(rng))

    def _xml(self) -> None:
        rng = self.rng
        fragment = self.doc.get("xml", type=XmlFragment)
        if rng.random() < 0.5 or not len(fragment.children):
            element = XmlElement(rng.choice(["p", "div", "h1"]), {"class": "c"})
            fragment.children.append(element)
            element.children.append(XmlText(rng.choice(SNIPPETS)))
        else:
            child = fragment.children[rng.randrange(len(fragment.children))]
            if isinstance(child, XmlElement):
                child.attributes["data-x"] = rng.choice(SNIPPETS)
            elif isinstance(child, XmlText):
                child.insert(0, rng.choice(SNIPPETS))

    def _nested(self) -> None:
        rng = self.rng
        target = self.doc.get("m", type=Map)
        kind = rng.random()
        key = rng.choice(["n", "inner", "sub"])
        if kind < 0.3:
            target[key] = Map({"x": 1, "deep": Map({"y": Array([1, 2, Text("z")])})})
        elif kind < 0.6:
            target[key] = Array([Text(rng.choice(SNIPPETS)), Map({"k": "v"})])
        elif kind < 0.8:
            target[key] = Text(rng.choice(SNIPPETS))
        else:
            target[key] = Doc()  # a subdocument


def session(rng: random.Random, edits: int, client_id: int | None = None) -> Session:
    """One document edited `edits` times; its updates, plus sometimes the whole state."""
    doc: Doc[Any] = Doc(client_id=client_id) if client_id is not None else Doc()
    result = Session(doc.client_id)

    def keep(event: TransactionEvent) -> None:
        if event.update != b"\x00\x00":
            result.updates.append(event.update)

    subscription = doc.observe(keep)
    editor = _Editor(doc, rng)
    for _ in range(edits):
        editor.edit()
    doc.unobserve(subscription)
    if rng.random() < 0.2:
        result.updates.append(doc.get_update())
    if rng.random() < 0.2 and len(result.updates) > 2:
        result.updates.append(merge_updates(*result.updates[-3:]))
    return result


def concurrent_sessions(rng: random.Random, edits: int) -> list[Session]:
    """Two documents editing the same content and exchanging updates: updates whose origins are
    the other client's items, as in a real room."""
    docs: list[Doc[Any]] = [Doc(), Doc()]
    sessions = [Session(doc.client_id) for doc in docs]
    subscriptions = [
        doc.observe(lambda event, index=index: sessions[index].updates.append(event.update))
        for index, doc in enumerate(docs)
    ]
    editors = [_Editor(doc, rng) for doc in docs]
    for _ in range(edits):
        author = rng.randrange(2)
        before = docs[1 - author].get_state()
        editors[author].edit()
        docs[1 - author].apply_update(docs[author].get_update(before))
    for doc, subscription in zip(docs, subscriptions, strict=True):
        doc.unobserve(subscription)  # pycrdt keeps a document that is still observed
    # What the second document relayed is the first one's: keep each author's own updates only.
    for index, doc in enumerate(docs):
        own = doc.client_id
        sessions[index].updates = [
            update for update in sessions[index].updates if _mentions(update, own)
        ]
    return sessions


def _mentions(update: bytes, client_id: int) -> bool:
    from bench.fuzz.ydecode import DecodeError, decode_update

    try:
        decoded = decode_update(update)
    except DecodeError:
        return True
    return any(run.client == client_id for run in decoded.clients) or not decoded.clients
