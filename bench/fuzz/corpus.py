"""The reproducers the fuzzer found (minimised) and the known shapes, with what each does.

    .venv/bin/python -m bench.fuzz.corpus [--large] [--out bench/fuzz/corpus]

writes one file per update (`NAME.bin`, or `NAME.1.bin`, `NAME.2.bin`... to send in that order
to one room) or per y-protocols frame (`NAME.frame.bin`), and `README.md`. `--large` also
writes the big shapes (hundreds of kB), which are not committed. `bench.fuzz.replay` sends
them to a real server; `bench.fuzz.oracle FILE...` runs update files in the oracle.

Effects are those on the server before the update validator (commit 589a896, yrs 0.28.0), but
for the cases in `LATER`, which name the commit they were seen on.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from bench.fuzz.frames import awareness_frame
from bench.fuzz.lib0 import (
    Nested,
)
from bench.fuzz.yencode import (
    ID,
    TYPE_MAP,
    AnyContent,
    ClientStructs,
    DeleteSet,
    Item,
    String,
    TypeContent,
    Update,
    encode_update,
)

TESTED = "589a896"


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    effect: str  # what it does to the server
    why: str  # why, in yrs terms
    updates: tuple[bytes, ...] = ()  # sent in order, each in its own frame, to one room
    frames: tuple[bytes, ...] = ()  # raw y-protocols frames
    large: bool = False  # written only with --large
    restart: bool = False  # what it does shows only when the room is loaded again
    # How the updates reach the server: "apart" (each stored and applied before the next is
    # sent), or "batch" (queued behind a first, unrelated update, so the intake merges them
    # into one batch); default: back to back.
    pacing: str = ""


def _hex(*parts: str) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(part) for part in parts)


def _one(*structs: Item, client: int = 1) -> bytes:
    return encode_update(Update((ClientStructs(client, 0, structs),)))


def deep_maps(depth: int) -> bytes:
    """`depth` maps, each the value of key "k" in the one before."""
    structs = [Item(TypeContent(TYPE_MAP), parent="m", parent_sub="k")]
    structs += [
        Item(TypeContent(TYPE_MAP), parent=ID(1, clock - 1), parent_sub="k")
        for clock in range(1, depth)
    ]
    return _one(*structs)


def unmerged_items(count: int) -> bytes:
    """`count` one-character items of one client, each after the previous one, unsquashed."""
    structs = [Item(String("x"), parent="codemirror")]
    structs += [Item(String("x"), origin=ID(1, clock - 1)) for clock in range(1, count)]
    return _one(*structs)


DELETE_CLIENT_1_CLOCK_0 = encode_update(Update((), DeleteSet(((1, ((0, 1),)),))))

PANICS = [
    Case(
        "panic-empty-client-run",
        "PanicException `Option::unwrap()` on `None` at yrs update.rs:85; the connection dies "
        "(1006), the room's document is left half-updated, the process often segfaults later",
        "The second update lists client 1 with zero structs. Decoding keeps an empty block "
        "list for it; `TransactionMut::apply_update` first trims the update by what the "
        "document already has of client 1 (`Update::exclude`), which takes "
        "`structs.front().unwrap()` of that empty list. Needs: a client entry with 0 structs "
        "for a client the document knows.",
        _hex("0101010008010178017e00", "0100010100"),
    ),
    Case(
        "panic-client-twice",
        "PanicException `internal error: entered unreachable code` at update.rs:152",
        "The second update has two entries for client 1 (clocks 0 and 2). Decoding appends "
        "both runs to one block list, which then has a hole at clock 1; `Update::exclude` "
        "splits it at a clock the document knows, and the binary search of "
        "`Update::find_index` (which assumes contiguous clocks) falls through to "
        "`unreachable!()`. Needs: one client twice in the struct section.",
        _hex(
            "0101010004010174017d00", "020101002701016d05696e6e6572010101022701016d05696e6e65720100"
        ),
    ),
    Case(
        "panic-zero-length-gc",
        "PanicException `attempt to divide by zero` at block_store.rs:60",
        "A GC struct of length 0 after an item. Items of length 0 are dropped when decoded; "
        "GC and Skip are not. Its clock range is (1, 1 + 0 - 1 = 0), and "
        "`ClientBlockList::find_index` guesses its start as `(clock / end) * right`: end 0.",
        _hex("01020100040101740161000000"),
    ),
    Case(
        "panic-clock-past-2-31",
        "PanicException `index out of bounds: the len is 1 but the index is "
        "9223372036854775807` at block_store.rs:62",
        "First clock 2^32-2. `Update::integrate` computes the hole before a block as "
        "`local_clock as i32 - id.clock as i32`: past 2^31 it wraps positive, so no Skip is "
        "put before the block and client 1's block list starts at 2^32-2. The next item's "
        "origin (1, 0) is not 'missing' (0 < the client's clock), so its lookup binary-"
        "searches for clock 0 below the first block: `right = mid - 1` underflows and mid "
        "becomes isize::MAX. Needs: a clock (or clock + length) of 2^31 or more.",
        _hex("010201feffffff0f0000840100016200"),
    ),
    Case(
        "panic-clock-wraps-on-sync",
        "accepted and stored; then PanicException `Option::unwrap()` on `None` at "
        "store.rs:234 whenever the document is encoded: sync step 2 to every newcomer, "
        "GET /update, compaction",
        "Two GC structs at clock 2^32-2 of lengths 15 and 2^32-1: clock + length wraps u32, "
        "so the second block starts before the first. `Store::write_blocks_from` finds the "
        "first block to send with `find_index(clock).unwrap()`, which misses in the "
        "unordered list.",
        _hex("010201feffffff0f000f00ffffffff0f00"),
    ),
    Case(
        "panic-overlapping-runs",
        "PanicException `Option::unwrap()` on `None` at block_store.rs:317",
        "Client 1 twice in one update with overlapping clocks (13..25 and 19..31), neither "
        "from 0. The first run is integrated after a Skip; the second one's blocks do not "
        "start where the list ends, so `BlockStore::push` takes them for a block that "
        "replaces an integrated Skip and looks that Skip up with "
        "`find_index(clock_start).unwrap()`: there is none.",
        _hex(
            "0202010d040101630b64656620662878293a0a2008010174017e02011324010163086c616e677561"
            "67650b64656620662878293a0a2008010174017e00"
        ),
    ),
    Case(
        "panic-overlapping-runs-short",
        "PanicException `Option::unwrap()` on `None` at block_store.rs:317 (the same site, "
        "found later, smaller)",
        "1: client 1 at clock 14 (integrated after a Skip [0, 14)). 2: client 1 at clock "
        "2^32-2. Its block does not start where client 1's list ends, so `BlockStore::push` "
        "takes it for one that fills a Skip, and `find_index(2^32-2).unwrap()` finds none. "
        "Needs: a clock past the client's end, here because of a clock past 2^31.",
        _hex("0101010e2701016d037375620200", "010101feffffff0f08010161017e00"),
    ),
    Case(
        "panic-map-observer",
        "PanicException `Option::unwrap()` on `None` at types/mod.rs:806, raised while "
        "pycrdt builds the MapEvent for the room's observer of `meta`",
        "1: client C sets meta.language at clock 7 (clocks 0-6 never sent: yrs integrates it "
        "after a Skip, and C's clock in the state vector stays 0). 2: deletes it (its content "
        "becomes ContentDeleted). 3: client 4 sets meta.language again and loses the "
        "conflict, so the deleted item is still the key's entry. `event_keys` sees that "
        "entry's clock 7 >= C's clock before the transaction (0), takes it for an item added "
        "in this transaction, and calls `item.content.get_last().unwrap()` on "
        "ContentDeleted. Only observed maps are hit: the room observes `meta`.",
        _hex(
            "01018fbb9981a7df940c072801046d657461086c616e6775616765017e00",
            "00018fbb9981a7df940c010701",
            "0101041b2801046d657461086c616e6775616765017e00",
        ),
        pacing="apart",
    ),
]

OTHERS = [
    Case(
        "stored-then-refused",
        "decodes, so it is stored; applying it raises RuntimeError (not ValueError): the "
        "peer gets 1011, and the stored row makes the room fail every later load (GET "
        "/update 500, joins 1011) after a restart",
        "The second struct's parent is ID (1, 20), inside a String item: `missing_dependency` "
        "returns `UpdateError::InvalidParent` ('block parent must be deleted or shared ref "
        "type').",
        _hex("010201122401016d016e08f09f9880f09f988004000114017d00"),
        restart=True,
    ),
    Case(
        "restart-changes-document",
        "clients see root `n` = [null] and client 1 at clock 0 in the state vector; after a "
        "restart the room has neither (the document changed under its clients)",
        "The first item's origin is (1, 1), a clock after its own (a forward reference): it "
        "stays pending and the second update integrates around it. Applied one at a time (as "
        "live, and as a cold load replays the log) that gives `n` = [null]; merged with "
        "`merge_updates` (as the intake merges a batch, and as compaction merges the updates "
        "still pending into the snapshot) the pair never integrates. The oracle shows it "
        "without a server: `bench.fuzz.oracle` with compare (live one by one vs merged).",
        _hex("01010100880101017e00", "010101050801016e017e00"),
        restart=True,
        pacing="batch",
    ),
    Case(
        "client-twice-same-clock",
        "accepted: one update gives clock 1 of client 1 two contents ('b' and 'c'). Applied "
        "alone and merged with the update before it, yrs builds different documents (oracle "
        "--compare), and Yjs clients need not pick the same one as the server",
        "Client 1 twice in the struct section, both runs at clock 1. Also accepted by the "
        "validator at 3fdc717 (the other client-twice cases are refused there only for their "
        "clock gaps): refusing a client that appears twice covers all of them.",
        _hex("0101010004010174016100", "0201010104010174016201010104010174016300"),
    ),
    Case(
        "deep-any-30000",
        "SIGSEGV (stack overflow in yrs's recursive `Any::decode`, during the decode check); "
        "about 26,000 levels are enough with an 8 MiB main-thread stack",
        "An Any item holding an array nested 30,000 deep (2 bytes a level).",
        (_one(Item(AnyContent((Nested(30_000),)), parent="a")),),
    ),
    Case(
        "deep-maps-then-delete",
        "the chain is accepted; the 6-byte delete of its outer map is a SIGSEGV (recursive "
        "delete), and the stored pair kills the server again on every load of the room; "
        "33,000 levels are enough",
        "40,000 maps, each the value of key 'k' of the one before, then a delete set "
        "deleting (1, 0).",
        (deep_maps(40_000), DELETE_CLIENT_1_CLOCK_0),
        large=True,
        restart=True,
    ),
    Case(
        "unmerged-items-5000",
        "5,000 one-character items, each after the previous one, not squashed (38 kB): "
        "memory and time grow faster than linearly with the count (see the 40,000 one)",
        "Each item is its own struct with an origin; yrs integrates them one by one.",
        (unmerged_items(5000),),
    ),
    Case(
        "unmerged-items-40000",
        "303 kB: about 900 MB of server memory and seconds of CPU (known problem 4)",
        "As unmerged-items-5000, with 40,000 items.",
        (unmerged_items(40_000),),
        large=True,
    ),
    Case(
        "awareness-nan",
        "accepted and relayed to every peer, the sender included: Python's json reads NaN "
        "and Infinity, browsers' JSON.parse does not (y-protocols' applyAwarenessUpdate "
        "throws in every other client)",
        "An awareness entry whose state is the text NaN.",
        frames=(awareness_frame([(7, 1, b"NaN")]),),
    ),
    Case(
        "awareness-deep-json",
        "RecursionError in the server's json.loads: the connection is closed with 1011 "
        "internal error (a client error, logged with a traceback), not 4400",
        "An awareness state of 5,000 nested JSON arrays.",
        frames=(awareness_frame([(7, 1, b"[" * 5000 + b"]" * 5000)]),),
    ),
]

# Found by the million-frame run on 2026-12-02 against the server with the validator (8e7b86b
# and later): accepted, and what yrs then wrote of the room was not what the clients hold.
LATER = [
    Case(
        "xml-hook",
        "on 7a0b7b8: accepted; yrs writes the room back without the hook's name, so a late "
        "joiner's sync and GET /update carry bytes Yjs throws on ('Unexpected end of array'), "
        "and every compaction failed. Refused (4422) since",
        "An XmlHook in root 't'; yrs encodes a hook with no name.",
        _hex("0101a786f9999ed6a601000701017405010000"),
    ),
    Case(
        "xml-hook-in-element",
        "as xml-hook, from inside an XmlElement with an attribute",
        "An XmlElement 'div' in root 'xml', an attribute, an XmlHook in it, a string.",
        _hex(
            "0104818fe4dbe6e6890c00070103786d6c03036469762800818fe4dbe6e6890c0005636c6173730177"
            "01630700818fe4dbe6e6890c0005000400818fe4dbe6e6890c020bf09f91a9e2808df09f92bb00"
        ),
    ),
    Case(
        "late-joiner-diverges",
        "on 7a0b7b8 and after: accepted; Yjs clients hold part of it pending (its origin "
        "names a client nobody has) while yrs integrates it, so late joiners get 'é' plus "
        "'\ufffdx\ufffd' where live clients show 'é'; yrs's own encoding of the room holds an "
        "empty struct, which compaction now refuses to write (the log is kept). The second "
        "update is refused (4422) since",
        "A format and 'é' in root 'notes', two emoji and an 'x' whose origin is (711101959, 0); "
        "then a second format over the emoji.",
        _hex(
            "02039e9190a4f8e19201002600e2accb9da5cbde0e070004626f6c640474727565849e9190a4f8e1"
            "9201000365cc81849e9190a4f8e192010208f09f9880f09f988001879c8ad30200849e9190a4f8e1"
            "920104017800",
            "01039e9190a4f8e19201000601056e6f74657304626f6c640474727565849e9190a4f8e19201000365"
            "cc81869e9190a4f8e192010204626f6c64046e756c6c00",
        ),
    ),
]

CASES = PANICS + OTHERS + LATER


def file_names(case: Case) -> list[str]:
    if case.frames:
        return [
            f"{case.name}.frame.bin" if len(case.frames) == 1 else f"{case.name}.{n}.frame.bin"
            for n in range(1, len(case.frames) + 1)
        ]
    if len(case.updates) == 1:
        return [f"{case.name}.bin"]
    return [f"{case.name}.{n}.bin" for n in range(1, len(case.updates) + 1)]


def readme(cases: list[Case]) -> str:
    lines = [
        "# Fuzz corpus",
        "",
        "Reproducers found by `bench.fuzz.run` and shrunk by its minimiser, and the known "
        f"shapes. Effects are on the server before the update validator (commit {TESTED}, "
        "pycrdt 0.14.13 on yrs 0.28.0) unless a case names another commit; yrs source lines "
        "are 0.28.0's. `NAME.N.bin` files are "
        "Yjs v1 updates to send in that order to one room (`.frame.bin`: a y-protocols frame). "
        "Rebuild with `.venv/bin/python -m bench.fuzz.corpus` (`--large` adds the big ones, "
        "not committed); check with `.venv/bin/python -m bench.fuzz.replay` against a real "
        "server, or `.venv/bin/python -m bench.fuzz.oracle FILE...` in a child process.",
        "",
    ]
    for case in cases:
        parts = case.frames or case.updates
        size = " + ".join(str(len(part)) for part in parts)
        lines.append(f"## {case.name}{' (large: built with --large)' if case.large else ''}")
        lines.append("")
        lines.append(f"- **Files**: {', '.join(file_names(case))} ({size} bytes)")
        if sum(map(len, parts)) <= 200:
            lines.append(f"- **Hex**: {' / '.join(part.hex() for part in parts)}")
        lines.append(f"- **Effect**: {case.effect}")
        lines.append(f"- **Why**: {case.why}")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "corpus")
    parser.add_argument("--large", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for case in CASES:
        if case.large and not args.large:
            continue
        for name, data in zip(file_names(case), case.frames or case.updates, strict=True):
            (args.out / name).write_bytes(data)
    (args.out / "README.md").write_text(readme(CASES))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
