"""Mutations of decoded updates, struct by struct, and of their bytes.

Each mutation takes a valid update (decoded from pycrdt's output) and changes one thing an
honest client never would: a parent, an origin, a clock, a content, a string's bytes, the delete
set. `Known` remembers items the room already holds, so that mutations can point at real ones
(a parent that is a string item, an origin inside a map entry) and not only at missing ones.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from bench.fuzz.lib0 import (
    AnyValue,
    Nested,
    RawString,
    Str,
)
from bench.fuzz.yencode import (
    GC,
    ID,
    TYPE_ARRAY,
    TYPE_DOC,
    TYPE_MAP,
    TYPE_TEXT,
    TYPE_UNDEFINED,
    TYPE_WEAK,
    TYPE_XML_ELEMENT,
    TYPE_XML_FRAGMENT,
    TYPE_XML_HOOK,
    TYPE_XML_TEXT,
    AnyContent,
    Binary,
    ClientStructs,
    Content,
    Deleted,
    DeleteSet,
    DocContent,
    Embed,
    Format,
    Item,
    JSONContent,
    Skip,
    String,
    Struct,
    TypeContent,
    Update,
    struct_length,
)

U32 = 2**32 - 1
ODD_CLOCKS = [0, 1, U32, U32 - 1, 2**31, 2**32, 2**53 - 1, 2**53, 2**63, 2**64 - 1]
ODD_CLIENTS = [0, 1, U32, 2**53 - 1, 2**53, 2**63, 2**64 - 1, 2**64]
ROOTS = ["codemirror", "meta", "t", "m", "a", "xml", "", "__proto__", "x" * 300]
BAD_UTF8 = [
    b"\xff\xfe",
    b"\xed\xa0\x80",  # a lone UTF-16 surrogate, as WTF-8
    b"\xf0\x9f\x98",  # the first three bytes of an emoji
    b"\xc0\x80",  # overlong NUL
    b"a\x80b",
    b"\xf4\x90\x80\x80",  # past U+10FFFF
]
# Known type refs, then ones yrs does not know (or only with its "weak" feature).
TYPE_REFS = [TYPE_ARRAY, TYPE_MAP, TYPE_TEXT, TYPE_XML_FRAGMENT, TYPE_XML_TEXT, TYPE_DOC, TYPE_WEAK]
TYPE_REFS += [8, 10, 11, 14, TYPE_UNDEFINED, 16, 127, 128, 255, 256]
ODD_JSON = ["{", "NaN", "Infinity", "undefined", "", '"\\ud800"', "1e999", "[" * 5000, "null"]


class Known:
    """Items a room has been sent (their first ID, length, and whether they are types)."""

    def __init__(self, limit: int = 512) -> None:
        self.items: deque[tuple[ID, int, bool]] = deque(maxlen=limit)

    def record(self, update: Update) -> None:
        for run in update.clients:
            clock = run.clock
            for block in run.structs:
                length = struct_length(block)
                if isinstance(block, Item) and 0 < length < 2**32:
                    is_type = isinstance(block.content, TypeContent)
                    self.items.append((ID(run.client, clock), length, is_type))
                clock += length

    def pick(self, rng: random.Random, types: bool | None = None) -> ID | None:
        """An ID inside a known item (a type's, a non-type's, or any), or None."""
        candidates = [entry for entry in self.items if types is None or entry[2] == types]
        if not candidates:
            return None
        first, length, _ = rng.choice(candidates)
        return ID(first.client, first.clock + rng.randrange(length))


def _items(update: Update) -> list[tuple[int, int, ID]]:
    """(run index, struct index, ID) of every item."""
    found = []
    for run_index, run in enumerate(update.clients):
        clock = run.clock
        for index, block in enumerate(run.structs):
            if isinstance(block, Item):
                found.append((run_index, index, ID(run.client, clock)))
            clock += struct_length(block)
    return found


def _replace_struct(update: Update, run_index: int, index: int, block: Struct) -> Update:
    run = update.clients[run_index]
    structs = (*run.structs[:index], block, *run.structs[index + 1 :])
    runs = list(update.clients)
    runs[run_index] = replace(run, structs=structs)
    return replace(update, clients=tuple(runs))


def _some_id(rng: random.Random, update: Update, known: Known) -> ID:
    """An ID worth pointing at: inside this update, inside the room, missing, or absurd."""
    own = _items(update)
    roll = rng.random()
    if roll < 0.3 and own:
        return rng.choice(own)[2]
    if roll < 0.6:
        found = known.pick(rng)
        if found is not None:
            return found
    if roll < 0.8:
        return ID(rng.choice(ODD_CLIENTS), rng.choice(ODD_CLOCKS))
    return ID(rng.randrange(1, 2**32), rng.randrange(0, 1000))


def _odd_string(rng: random.Random) -> Str:
    if rng.random() < 0.6:
        return RawString(rng.choice(BAD_UTF8))
    return rng.choice(["", "\u0000", "😀", "x" * rng.choice([1, 1000, 100_000])])


def _odd_content(rng: random.Random) -> Content:
    choice = rng.randrange(14)
    if choice == 0:
        type_ref = rng.choice(TYPE_REFS)
        return TypeContent(type_ref)
    if choice == 1:
        return TypeContent(rng.choice([TYPE_XML_ELEMENT, TYPE_XML_HOOK]), _odd_string(rng))
    if choice == 2:
        choices: list[AnyValue] = [{}, None, "x", [1], {"autoLoad": True, "gc": False}, Nested(50)]
        opts = rng.choice(choices)
        return DocContent(rng.choice(["", "guid", "x" * 1000]), opts)
    if choice == 3:
        return Format(rng.choice(["bold", "", "__proto__"]), rng.choice(ODD_JSON))
    if choice == 4:
        return Embed(rng.choice([*ODD_JSON, '{"image":"x"}']))
    if choice == 5:
        texts = tuple(rng.choice([*ODD_JSON, "1", '"s"']) for _ in range(rng.randrange(4)))
        count = rng.choice([None, len(texts) - 1, len(texts) + 1, U32])
        return JSONContent(texts, None if count is None or count < 0 else count)
    if choice == 6:
        return String(rng.choice(["", "😀", "a" * 1000, "e\u0301"]))
    if choice == 7:
        return AnyContent(())
    if choice == 8:
        return Deleted(rng.choice([0, 1, U32, 2**31]))
    if choice == 9:
        return Binary(rng.choice([b"", b"\x00" * 1000]))
    if choice == 10:
        return AnyContent(
            (Nested(rng.choice([10, 100, 1000]), None, rng.choice(["array", "map"])),)
        )
    if choice == 11:
        return String(_odd_string(rng))
    if choice == 12:
        return AnyContent((RawString(rng.choice(BAD_UTF8)), {"k": float("nan")}))
    return AnyContent(tuple(range(rng.choice([2, 100]))))


# -- the mutations ------------------------------------------------------------------------------

Mutation = Callable[[random.Random, Update, Known], Update]


def _pick_item(rng: random.Random, update: Update) -> tuple[int, int, ID, Item] | None:
    own = _items(update)
    if not own:
        return None
    run_index, index, id_ = rng.choice(own)
    block = update.clients[run_index].structs[index]
    assert isinstance(block, Item)
    return run_index, index, id_, block


def wrong_parent(rng: random.Random, update: Update, known: Known) -> Update:
    picked = _pick_item(rng, update)
    if picked is None:
        return update
    run_index, index, own_id, item = picked
    roll = rng.random()
    parent: Str | ID
    if roll < 0.25:
        parent = rng.choice(ROOTS)
    elif roll < 0.5:
        parent = known.pick(rng, types=False) or own_id  # a parent that is no type
    elif roll < 0.6:
        parent = own_id  # its own parent
    elif roll < 0.8:
        parent = known.pick(rng, types=True) or _some_id(rng, update, known)
    else:
        parent = _some_id(rng, update, known)
    sub = item.parent_sub if rng.random() < 0.7 else rng.choice([None, "k", ""])
    moved = replace(item, origin=None, right_origin=None, parent=parent, parent_sub=sub, info=None)
    return _replace_struct(update, run_index, index, moved)


def odd_origin(rng: random.Random, update: Update, known: Known) -> Update:
    picked = _pick_item(rng, update)
    if picked is None:
        return update
    run_index, index, own_id, item = picked
    target = rng.choice([own_id, _some_id(rng, update, known)])
    roll = rng.random()
    if roll < 0.4:
        changed = replace(item, origin=target, info=None)
    elif roll < 0.7:
        changed = replace(item, right_origin=target, info=None)
    elif roll < 0.85:
        changed = replace(item, origin=item.right_origin, right_origin=item.origin, info=None)
    else:
        changed = replace(item, origin=target, right_origin=target, info=None)
    return _replace_struct(update, run_index, index, changed)


def toggle_parent_sub(rng: random.Random, update: Update, known: Known) -> Update:
    picked = _pick_item(rng, update)
    if picked is None:
        return update
    run_index, index, _, item = picked
    if item.parent_sub is None:
        changed = replace(item, parent_sub=rng.choice(["k", "", "language"]), info=None)
        if rng.random() < 0.5 and item.origin is not None:
            changed = replace(changed, origin=None, right_origin=None, parent="meta")
    else:
        changed = replace(item, parent_sub=None, info=None)
    return _replace_struct(update, run_index, index, changed)


def odd_clock(rng: random.Random, update: Update, known: Known) -> Update:
    if not update.clients:
        return update
    runs = list(update.clients)
    run_index = rng.randrange(len(runs))
    run = runs[run_index]
    roll = rng.random()
    if roll < 0.4:
        runs[run_index] = replace(run, clock=rng.choice(ODD_CLOCKS))
    elif roll < 0.7:
        # Overlap what this client already sent: the same clocks with other content.
        runs[run_index] = replace(run, clock=max(0, run.clock - rng.randint(1, 5)))
    elif roll < 0.85:
        runs.append(replace(run, clock=max(0, run.clock + rng.randint(-2, 50))))  # the client twice
    else:
        other = known.pick(rng)
        client = other.client if other is not None else rng.choice(ODD_CLIENTS)
        runs[run_index] = replace(run, client=client)  # another client's clocks
    return replace(update, clients=tuple(runs))


def drop_or_hole(rng: random.Random, update: Update, known: Known) -> Update:
    own = [(r, i) for r, run in enumerate(update.clients) for i in range(len(run.structs))]
    if not own:
        return update
    run_index, index = rng.choice(own)
    block = update.clients[run_index].structs[index]
    length = struct_length(block)
    roll = rng.random()
    if roll < 0.3:
        run = update.clients[run_index]
        structs = run.structs[:index] + run.structs[index + 1 :]
        runs = list(update.clients)
        runs[run_index] = replace(run, structs=structs)
        return replace(update, clients=tuple(runs))
    if roll < 0.55:
        return _replace_struct(update, run_index, index, GC(length))
    if roll < 0.8:
        return _replace_struct(update, run_index, index, Skip(length))
    fillers: list[Struct] = [GC(rng.choice([0, U32])), Skip(rng.choice([0, 1, U32]))]
    filler = rng.choice(fillers)
    run = update.clients[run_index]
    structs = (*run.structs[:index], filler, *run.structs[index:])
    runs = list(update.clients)
    runs[run_index] = replace(run, structs=structs)
    return replace(update, clients=tuple(runs))


def odd_content(rng: random.Random, update: Update, known: Known) -> Update:
    picked = _pick_item(rng, update)
    if picked is None:
        return update
    run_index, index, _, item = picked
    return _replace_struct(update, run_index, index, replace(item, content=_odd_content(rng)))


def bad_utf8(rng: random.Random, update: Update, known: Known) -> Update:
    picked = _pick_item(rng, update)
    if picked is None:
        return update
    run_index, index, _, item = picked
    bad = RawString(rng.choice(BAD_UTF8))
    roll = rng.random()
    if roll < 0.4:
        changed = replace(item, content=String(bad))
    elif roll < 0.6:
        changed = replace(item, origin=None, right_origin=None, parent=bad, info=None)
    elif roll < 0.8:
        changed = replace(
            item, origin=None, right_origin=None, parent="m", parent_sub=bad, info=None
        )
    else:
        changed = replace(item, content=Format(bad, "true"))
    return _replace_struct(update, run_index, index, changed)


def split_surrogate(rng: random.Random, update: Update, known: Known) -> Update:
    """An item whose origin falls between the two UTF-16 halves of an emoji (yrs and Yjs
    disagree about such splits)."""
    picked = _pick_item(rng, update)
    if picked is None or not update.clients:
        return update
    run_index, index, own_id, item = picked
    emoji = replace(item, content=String("😀😀"))
    update = _replace_struct(update, run_index, index, emoji)
    middle = ID(own_id.client, own_id.clock + rng.choice([1, 3]))
    after = Item(String("x"), origin=middle, right_origin=rng.choice([None, middle]))
    runs = list(update.clients)
    runs.append(ClientStructs(rng.randrange(1, 2**31), 0, (after,)))
    return replace(update, clients=tuple(runs))


def odd_delete_set(rng: random.Random, update: Update, known: Known) -> Update:
    entries = list(update.delete_set.clients)
    roll = rng.random()
    target = known.pick(rng) or _some_id(rng, update, known)
    if roll < 0.3:
        entries.append((target.client, ((0, U32),)))  # everything, and then some
    elif roll < 0.5:
        entries.append((target.client, ((target.clock, 3), (target.clock + 1, 5), (0, 1))))
    elif roll < 0.65:
        entries.append((target.client, tuple((i * 2, 1) for i in range(rng.choice([10, 5000])))))
    elif roll < 0.8:
        entries.append((rng.choice(ODD_CLIENTS), ((rng.choice(ODD_CLOCKS), rng.choice([0, 1])),)))
    else:
        entries.extend([(target.client, ((target.clock, 1),))] * 2)  # one client twice
    return replace(update, delete_set=DeleteSet(tuple(entries)))


def lying_info(rng: random.Random, update: Update, known: Known) -> Update:
    picked = _pick_item(rng, update)
    if picked is None:
        return update
    run_index, index, _, item = picked
    roll = rng.random()
    if roll < 0.5:
        info = (item.info_byte() & 0xE0) | rng.choice([0, 1, 2, 3, 7, 9, 10, 11, 15, 16, 20, 31])
    else:
        info = item.info_byte() ^ rng.choice([0x80, 0x40, 0x20, 0x10])
    return _replace_struct(update, run_index, index, replace(item, info=info))


def lying_count(rng: random.Random, update: Update, known: Known) -> Update:
    if not update.clients:
        return update
    runs = list(update.clients)
    run_index = rng.randrange(len(runs))
    real = len(runs[run_index].structs)
    runs[run_index] = replace(runs[run_index], count=rng.choice([0, real + 1, U32, 2**40]))
    return replace(update, clients=tuple(runs))


STRUCT_MUTATIONS: dict[str, Mutation] = {
    "wrong_parent": wrong_parent,
    "odd_origin": odd_origin,
    "parent_sub": toggle_parent_sub,
    "odd_clock": odd_clock,
    "hole": drop_or_hole,
    "odd_content": odd_content,
    "bad_utf8": bad_utf8,
    "split_surrogate": split_surrogate,
    "delete_set": odd_delete_set,
    "lying_info": lying_info,
    "lying_count": lying_count,
}
