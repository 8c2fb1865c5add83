"""Hostile updates built from nothing: the shapes that cost or crash a yrs core.

Each builder returns a group: one or more updates meant for the same room in that order (a
deep chain of maps, then the 7-byte update that deletes its root). Sizes are drawn mostly small,
sometimes as large as the known crashes (40,000-deep `any`, 60,000 nested maps).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from bench.fuzz.lib0 import (
    AnyValue,
    Nested,
)
from bench.fuzz.yencode import (
    GC,
    ID,
    TYPE_ARRAY,
    TYPE_MAP,
    TYPE_XML_ELEMENT,
    AnyContent,
    ClientStructs,
    Content,
    Deleted,
    DeleteSet,
    DocContent,
    Embed,
    Format,
    Item,
    Skip,
    String,
    Struct,
    TypeContent,
    Update,
    encode_update,
)

U32 = 2**32 - 1
NO_DELETES = DeleteSet()
Group = list[bytes]


def _depth(rng: random.Random, huge: float) -> int:
    """Mostly modest depths; with probability `huge`, one at the size of the known crashes."""
    if rng.random() < huge:
        return rng.choice([20_000, 40_000, 60_000])
    return rng.choice([2, 10, 100, 500, 1000, 3000])


def _client(rng: random.Random) -> int:
    return rng.randrange(1, 2**31)


def _one(client: int, *structs: Struct, clock: int = 0, ds: DeleteSet = NO_DELETES) -> bytes:
    return encode_update(Update((ClientStructs(client, clock, structs),), ds))


def deep_any(rng: random.Random, huge: float) -> Group:
    kind = rng.choice(["array", "map"])
    leaf: AnyValue = rng.choice([None, "leaf", 1, b"x"])
    value = Nested(_depth(rng, huge), leaf, kind)
    where = rng.random()
    if where < 0.5:
        item = Item(AnyContent((value,)), parent=rng.choice(["a", "list"]))
    elif where < 0.8:
        item = Item(AnyContent((value,)), parent="meta", parent_sub=rng.choice(["language", "k"]))
    else:
        item = Item(DocContent("sub", value), parent="m", parent_sub="doc")
    return [_one(_client(rng), item)]


def deep_json(rng: random.Random, huge: float) -> Group:
    depth = _depth(rng, huge)
    text = "[" * depth + "]" * depth
    contents: list[Content] = [Embed(text), Format("bold", text)]
    content = rng.choice(contents)
    return [_one(_client(rng), Item(String("ab"), parent="t"), Item(content, parent="t"))]


def deep_types(rng: random.Random, huge: float) -> Group:
    """A chain of nested types, each the parent of the next; then, often, a tiny update that
    deletes the outermost one (a recursive delete over the whole chain)."""
    client = _client(rng)
    depth = _depth(rng, huge)
    type_ref = rng.choice([TYPE_MAP, TYPE_MAP, TYPE_ARRAY, TYPE_XML_ELEMENT])
    name = "p" if type_ref == TYPE_XML_ELEMENT else None
    sub = "k" if type_ref == TYPE_MAP else None
    structs: list[Struct] = [Item(TypeContent(type_ref, name), parent="m", parent_sub="k")]
    for clock in range(1, depth):
        parent = ID(client, clock - 1)
        structs.append(Item(TypeContent(type_ref, name), parent=parent, parent_sub=sub))
    group = [_one(client, *structs)]
    if rng.random() < 0.7:
        deleter = _client(rng)
        group.append(_one(deleter, ds=DeleteSet(((client, ((0, 1),)),))))
    return group


def many_items(rng: random.Random, huge: float) -> Group:
    """N one-character items of one client, each after (or before) the previous one, unmerged."""
    client = _client(rng)
    count = (
        rng.choice([1000, 5000, 20_000, 40_000])
        if rng.random() < huge
        else rng.choice([10, 100, 500, 2000])
    )
    leftwards = rng.random() < 0.3
    structs: list[Struct] = [Item(String("x"), parent="codemirror")]
    for clock in range(1, count):
        if leftwards:
            structs.append(Item(String("x"), right_origin=ID(client, clock - 1)))
        else:
            structs.append(Item(String("x"), origin=ID(client, clock - 1)))
    return [_one(client, *structs)]


def pending_chain(rng: random.Random, huge: float) -> Group:
    """Updates that wait for a clock that never comes: every later update retries them."""
    client = _client(rng)
    group = []
    for start in range(1, rng.choice([2, 5, 20]) + 1):
        group.append(_one(client, Item(String("p"), origin=ID(client, start - 1)), clock=start))
    return group


def huge_delete_set(rng: random.Random, huge: float) -> Group:
    ranges_count = rng.choice([100, 10_000, 100_000]) if rng.random() < huge else 50
    ranges = tuple((i * 3, rng.choice([1, 2, U32])) for i in range(ranges_count))
    clients = tuple((_client(rng), ranges) for _ in range(rng.choice([1, 3])))
    return [encode_update(Update((), DeleteSet(clients)))]


def subdocs(rng: random.Random, huge: float) -> Group:
    client = _client(rng)
    choices: list[AnyValue] = [
        {},
        {"autoLoad": True},
        {"shouldLoad": True, "gc": False},
        {"collectionId": "c"},
        1,
    ]
    opts = rng.choice(choices)
    guid = rng.choice(["g", "", "same-guid"])
    structs: list[Struct] = [
        Item(DocContent(guid, opts), parent="m", parent_sub="sub"),
        Item(DocContent(guid, opts), parent="a"),
    ]
    if rng.random() < 0.5:
        structs.append(Item(DocContent(guid, opts), parent=ID(client, 0)))  # a doc as a parent
    group = [_one(client, *structs)]
    if rng.random() < 0.5:
        group.append(_one(_client(rng), ds=DeleteSet(((client, ((0, 3),)),))))
    return group


def gc_and_skip(rng: random.Random, huge: float) -> Group:
    client = _client(rng)
    shapes: list[list[Struct]] = [
        [Skip(rng.choice([1, U32]))],
        [GC(rng.choice([1, U32])), Item(String("a"), parent="t")],
        [Item(String("a"), parent="t"), GC(0), Item(String("b"), origin=ID(client, 0))],
        [Skip(1), Item(String("a"), origin=ID(client, 0))],
        [GC(U32), GC(U32)],
        [Item(Deleted(U32), parent="t"), Item(String("z"), parent="t")],
    ]
    return [_one(client, *rng.choice(shapes), clock=rng.choice([0, 0, 5, U32 - 1]))]


def format_storm(rng: random.Random, huge: float) -> Group:
    client = _client(rng)
    structs: list[Struct] = [Item(String("abc"), parent="codemirror")]
    for clock in range(3, 3 + rng.choice([10, 300, 3000])):
        key = rng.choice(["bold", "italic", "x"])
        structs.append(
            Item(Format(key, rng.choice(["true", "null"])), origin=ID(client, clock - 1))
        )
    return [_one(client, *structs)]


def empty_shapes(rng: random.Random, huge: float) -> Group:
    shapes = [
        b"\x00\x00",
        b"",
        encode_update(Update(tuple(ClientStructs(c, 0, ()) for c in range(1, 500)))),
        _one(_client(rng), Item(String(""), parent="t")),
        _one(_client(rng), Item(AnyContent(()), parent="a"), Item(String("x"), parent="a")),
        _one(_client(rng), Item(Deleted(0), parent="t")),
    ]
    return [rng.choice(shapes)]


CRAFTERS: dict[str, Callable[[random.Random, float], Group]] = {
    "deep_any": deep_any,
    "deep_json": deep_json,
    "deep_types": deep_types,
    "many_items": many_items,
    "pending_chain": pending_chain,
    "huge_delete_set": huge_delete_set,
    "subdocs": subdocs,
    "gc_skip": gc_and_skip,
    "format_storm": format_storm,
    "empty": empty_shapes,
}
