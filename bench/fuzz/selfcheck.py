"""Checks the encoder against pycrdt: `.venv/bin/python -m bench.fuzz.selfcheck`.

1. Every update pycrdt makes (random sessions of every shared type) decodes into the model and
   encodes back to the same bytes.
2. pycrdt accepts what the encoder builds, one update per kind of content, and reads back the
   values that were written.
"""

from __future__ import annotations

import random
import sys
from collections import Counter
from typing import Any

from pycrdt import Array, Doc, Map, Text, XmlFragment

from bench.fuzz.docs import concurrent_sessions, session
from bench.fuzz.lib0 import (
    UNDEFINED,
    BigInt,
    Float32,
)
from bench.fuzz.ydecode import decode_state_vector, decode_update
from bench.fuzz.yencode import (
    GC,
    ID,
    TYPE_MAP,
    TYPE_XML_ELEMENT,
    AnyContent,
    Binary,
    ClientStructs,
    Deleted,
    DeleteSet,
    DocContent,
    Embed,
    Format,
    Item,
    Skip,
    String,
    TypeContent,
    Update,
    encode_update,
)

CLIENT = 424242
NO_DELETES = DeleteSet()


def round_trips(sessions: int, seed: int) -> Counter[str]:
    rng = random.Random(seed)
    kinds: Counter[str] = Counter()
    for index in range(sessions):
        found = [session(rng, rng.randint(1, 30))] if index % 3 else concurrent_sessions(rng, 15)
        for one in found:
            for update in one.updates:
                decoded = decode_update(update)
                if encode_update(decoded) != update:
                    raise AssertionError(f"round trip differs for {update.hex()}")
                for run in decoded.clients:
                    for block in run.structs:
                        content = block.content if isinstance(block, Item) else block
                        kinds[type(content).__name__] += 1
    return kinds


def _apply(*structs: Item | GC | Skip, delete_set: DeleteSet = NO_DELETES) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    doc.apply_update(encode_update(Update((ClientStructs(CLIENT, 0, structs),), delete_set)))
    return doc


def built_updates_apply() -> list[str]:
    checked = []
    doc = _apply(Item(String("héllo 😀"), parent="t"), Item(String("!"), origin=ID(CLIENT, 7)))
    assert str(doc.get("t", type=Text)) == "héllo 😀!", str(doc.get("t", type=Text))
    checked.append("String (UTF-16 clock lengths, origin continuing a run)")

    values: tuple[Any, ...] = (None, True, False, -5, 2**40, 1.5, Float32(0.25), "s", b"\x00\x01")
    doc = _apply(Item(AnyContent((*values, [1, [2]], {"k": {"j": None}})), parent="a"))
    got = doc.get("a", type=Array).to_py()
    assert got == [None, True, False, -5, 2**40, 1.5, 0.25, "s", b"\x00\x01", [1, [2]],
                   {"k": {"j": None}}], got  # fmt: skip
    checked.append("Any (every lib0 tag but undefined and bigint)")

    doc = _apply(Item(AnyContent((UNDEFINED, BigInt(-3))), parent="a"))
    assert len(doc.get("a", type=Array)) == 2
    checked.append("Any undefined and bigint")

    doc = _apply(Item(Binary(b"\xff\x00"), parent="a"))
    assert doc.get("a", type=Array).to_py() == [b"\xff\x00"]
    checked.append("Binary")

    doc = _apply(Item(AnyContent(("v",)), parent="m", parent_sub="key"))
    assert doc.get("m", type=Map).to_py() == {"key": "v"}
    checked.append("Map entry (parent sub)")

    doc = _apply(
        Item(String("ab"), parent="t"),
        Item(Format("bold", "true"), origin=ID(CLIENT, 1)),
        Item(Embed('{"image":"x"}'), origin=ID(CLIENT, 2)),
    )
    diff = doc.get("t", type=Text).diff()
    assert diff == [("ab", None), ({"image": "x"}, {"bold": True})], diff
    checked.append("Format, Embed")

    doc = _apply(
        Item(TypeContent(TYPE_MAP), parent="m", parent_sub="inner"),
        Item(AnyContent((1,)), parent=ID(CLIENT, 0), parent_sub="x"),
    )
    assert doc.get("m", type=Map).to_py() == {"inner": {"x": 1}}
    checked.append("nested type, parent given by ID")

    doc = _apply(Item(TypeContent(TYPE_XML_ELEMENT, "p"), parent="xml"))
    assert str(doc.get("xml", type=XmlFragment)) == "<p></p>"
    checked.append("XmlElement with a node name")

    doc = _apply(Item(DocContent("guid-1", {"gc": True}), parent="m", parent_sub="sub"))
    assert isinstance(doc.get("m", type=Map)["sub"], Doc)
    checked.append("subdocument")

    doc = _apply(
        GC(2),
        Item(String("x"), parent="t"),
        Item(Deleted(3), parent="t"),
        Skip(1),
        Item(String("y"), parent="t"),
    )
    assert decode_state_vector(doc.get_state()) == {CLIENT: 6}, doc.get_state()
    checked.append("GC, Deleted, Skip advance clocks; structs after a Skip wait as pending")

    doc = _apply(Item(String("abc"), parent="t"), delete_set=DeleteSet(((CLIENT, ((1, 1),)),)))
    assert str(doc.get("t", type=Text)) == "ac"
    checked.append("delete set")
    return checked


def main() -> None:
    kinds = round_trips(sessions=300, seed=1)
    print(f"round trip of pycrdt's own updates: byte-identical; structs seen: {dict(kinds)}")
    for line in built_updates_apply():
        print(f"pycrdt accepts the encoder's update: {line}")
    sys.exit(0)


if __name__ == "__main__":
    main()
