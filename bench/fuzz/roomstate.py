"""What a room holds, from its `GET /api/rooms/{room}/update` bytes, for before/after a restart.

The summary is the state vector and, for every root name, the root read as text, map and array
(each from a fresh document: reading casts the root). It is computed in a child process: a room
the fuzzer filled may be as deep as what crashes the server, and must not crash the fuzzer.
"""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any

from bench.fuzz.child import Child, ChildDied, ChildTimedOut, serve

Summary = dict[str, Any]
MAX_ROOTS = 40


def summarise(update: bytes) -> Summary:
    """Runs in the child; a panic comes back as an error (PanicException does not pickle)."""
    try:
        return _summarise(update)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:
        return {"error": f"{type(error).__name__}: {str(error)[:200]}"}


def _summarise(update: bytes) -> Summary:
    from pycrdt import Array, Doc, Map, Text, XmlFragment

    from bench.fuzz.ydecode import decode_state_vector

    doc: Doc[Any] = Doc()
    doc.apply_update(update)
    encoded = doc.get_update()
    kinds = root_kinds(encoded)
    summary: Summary = {
        "state_vector": sorted(decode_state_vector(doc.get_state()).items()),
        "roots": {},
    }
    types = {"text": Text, "map": Map, "array": Array, "xml": XmlFragment}
    for name in sorted(kinds)[:MAX_ROOTS]:
        kind = kinds[name]
        fresh: Doc[Any] = Doc()
        fresh.apply_update(encoded)
        root = fresh.get(name, type=types[kind])
        try:
            if isinstance(root, Map | Array):
                value = root.to_py()
            elif isinstance(root, XmlFragment):
                value = _xml(root)
            else:
                value = root.diff()  # the text with its formatting
            text = json.dumps(value, sort_keys=True, default=_stable)
        except RecursionError:
            text = "unreadable: too deep"
        summary["roots"][name] = (
            f"{kind} {len(text)} {hashlib.sha256(text.encode()).hexdigest()[:16]}"
        )
    return summary


def _stable(value: Any) -> str:
    """What JSON cannot hold, by type (a repr would carry a memory address); a subdocument
    by its guid."""
    guid = getattr(value, "guid", None)
    return f"<{type(value).__name__} {guid}>" if guid is not None else f"<{type(value).__name__}>"


def _xml(node: Any) -> Any:
    """An XML tree with attributes sorted: pycrdt renders them in hash order, which differs
    between two documents with the same content."""
    from pycrdt import XmlElement, XmlText

    if isinstance(node, XmlText):
        return ["text", node.diff()]
    children = [_xml(child) for child in node.children]
    if isinstance(node, XmlElement):
        attributes: Any = node.attributes  # pycrdt types its __iter__ as returning an Iterable
        pairs = sorted((key, json.dumps(value, default=_stable)) for key, value in attributes)
        return ["element", node.tag, pairs, children]
    return ["fragment", children]


def root_kinds(update: bytes) -> dict[str, str]:
    """Each root's likely type, from the items that name it as their parent. (Reading a root as
    the wrong type is not safe: pycrdt iterates a text read as an array forever.)"""
    from bench.fuzz.ydecode import decode_update
    from bench.fuzz.yencode import (
        TYPE_XML_ELEMENT,
        TYPE_XML_TEXT,
        Deleted,
        Embed,
        Format,
        Item,
        String,
        TypeContent,
    )

    seen: dict[str, set[str]] = {}
    for run in decode_update(update).clients:
        for block in run.structs:
            if not isinstance(block, Item) or not isinstance(block.parent, str):
                continue
            marks = seen.setdefault(block.parent, set())
            content = block.content
            if isinstance(content, Deleted):
                continue  # says nothing of the type (deleted text is Deleted too)
            if block.parent_sub is not None:
                marks.add("map")
            elif isinstance(content, String | Format | Embed):
                marks.add("text")
            elif isinstance(content, TypeContent) and content.type_ref in (
                TYPE_XML_ELEMENT,
                TYPE_XML_TEXT,
            ):
                marks.add("xml")
            else:
                marks.add("array")
    kinds = {}
    for name, marks in seen.items():
        kinds[name] = "text"  # reading anything as text is safe
        for kind in ("text", "xml", "array", "map"):
            if kind in marks:
                kinds[name] = kind
                break
    return kinds


class Inspector:
    """Summaries computed in a child process that may die on a hostile document."""

    def __init__(self) -> None:
        self._child = Child("bench.fuzz.roomstate", 3.0)

    def summary(self, update: bytes) -> Summary:
        try:
            return self._child.ask([update])
        except ChildDied as death:
            return {"error": f"the inspecting process died: {death.how.splitlines()[0]}"}
        except ChildTimedOut as error:
            return {"error": str(error)}

    def close(self) -> None:
        self._child.close()


def differences(before: Summary, after: Summary) -> list[str] | None:
    """What differs between two summaries, in words; None when they cannot be compared (the
    room could not be read before the restart, or could not be inspected)."""
    if before.get("server_error") or before.get("error") or after.get("error"):
        return None
    if after.get("server_error"):
        return [f"readable before the restart, not after: {after['server_error']}"]
    found = []
    if before["state_vector"] != after["state_vector"]:
        found.append(f"state vector {before['state_vector']} -> {after['state_vector']}")
    for name in sorted(set(before["roots"]) | set(after["roots"])):
        old, new = before["roots"].get(name), after["roots"].get(name)
        if old != new:
            found.append(f"root {name!r}: {old} -> {new}")
    return found


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        serve(lambda parts: summarise(parts[0]))
