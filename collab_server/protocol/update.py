"""Yjs document updates (encoding v1), decoded far enough to check them before yrs sees them.

yrs is native code: a lib0 `any` value nested tens of thousands deep overflows its stack while it
decodes (the process dies, no exception), and some shapes make it panic. So every update a client
sends is decoded here first, iteratively and within limits, and refused with a reason if it
exceeds them. The decoder follows Yjs's `readStructs`/`readDeleteSet` and lib0's `readAny`, and
refuses what Yjs itself cannot read (content and type references it does not know) and what yrs
reads differently from Yjs (legacy JSON content, whose item count yrs reads one too far).

Decoding gives the update's structs and delete set; `rooms.shape` checks them against what the
room's document already holds (nesting of shared types, split surrogate pairs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

from collab_server.protocol.close_codes import CloseCode
from collab_server.protocol.errors import ProtocolError

# yrs keeps clocks as u32 and compares them as i32 in places: keep every clock below 2**31.
MAX_CLOCK = 2**31 - 1
# lib0 reads var uints into JavaScript numbers.
MAX_VAR_UINT = 2**53 - 1

# Struct kinds: the content reference of an item (1-9), or GC (0) and Skip (10).
GC = 0
DELETED = 1
JSON = 2
BINARY = 3
STRING = 4
EMBED = 5
FORMAT = 6
TYPE = 7
ANY = 8
DOC = 9
SKIP = 10

HAS_ORIGIN = 0x80
HAS_RIGHT_ORIGIN = 0x40
HAS_PARENT_SUB = 0x20
CONTENT_BITS = 0x1F
YRS_CONTENT_BITS = 0x0F  # yrs ignores the fifth bit Yjs reads

# Shared types Yjs knows (Array, Map, Text, XmlElement, XmlFragment, XmlHook, XmlText); yrs also
# reads weak links and others, which would make every Yjs client in the room throw. XmlHook (no
# editor makes one) is refused too: yrs encodes it back without its name.
TYPE_XML_ELEMENT = 3
TYPE_XML_HOOK = 5
KNOWN_TYPES = range(7)
YRS_ONLY_TYPES = (9, 15)  # a sub-document, and "undefined": no payload

ID = tuple[int, int]  # (client, clock)


@dataclass(frozen=True, slots=True)
class UpdateLimits:
    """What one update may contain (its size in bytes is bounded by the message limit)."""

    max_structs: int = 200_000
    max_delete_ranges: int = 200_000
    max_depth: int = 128  # nesting of `any` and JSON values, and of shared types in a document
    # Consecutive one-client items that yrs squashes into one at commit cost it quadratic time
    # and memory (40,000 took 2 s and 900 MB); Yjs never sends them unsquashed.
    max_unmerged_run: int = 4096
    # Items a room holds that wait for ids nobody sent yet (yrs keeps them pending); each one
    # is looked at again when its client's ids arrive.
    max_pending_items: int = 1000
    # yrs places an item with no left origin by walking its list from the start (the Yjs
    # algorithm): about 170 ns an item on this machine. 500 such items in one update against a
    # fuzzed 9,000-character text took 1.9 s on the event loop. The walks one update may cost,
    # counted as the items in front of each: about 0.2 s at most.
    max_scan_items: int = 1_000_000


class Struct(NamedTuple):
    client: int
    clock: int
    length: int  # in clock ticks (UTF-16 code units for strings)
    kind: int  # GC, SKIP, or the item's content reference
    origin: ID | None
    right_origin: ID | None
    parent: str | ID | None  # a root type's name, a type item's id, or None: copied from origin
    type_ref: int  # the shared type a TYPE item makes; -1 for other kinds
    surrogates: tuple[int, ...]  # clocks (from `clock`) of high surrogates in a string item
    keyed: bool = False  # a map entry (it has a key), not an item of a list or text


@dataclass(frozen=True, slots=True)
class DecodedUpdate:
    data: bytes  # the update as it came, which is what is stored, applied and relayed
    structs: list[Struct]
    deletes: list[tuple[int, int, int]]  # (client, clock, length)

    @property
    def is_empty(self) -> bool:
        return not self.structs and not self.deletes


class UpdateRefused(ProtocolError):
    """An update the server will not store; `kind` names the rule, for metrics."""

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(f"update refused: {reason}", CloseCode.UPDATE_REJECTED)
        self.kind = kind


def refused(reason: str, kind: str = "malformed") -> UpdateRefused:
    return UpdateRefused(reason, kind)


def decode_update(data: bytes, limits: UpdateLimits, *, strict: bool = True) -> DecodedUpdate:
    """Decode an update; raise `UpdateRefused` (4422) if it is malformed or over `limits`.

    `strict=False` reads what yrs reads (for a stored log written before these checks): legacy
    JSON content and sub-documents are read, not refused; only the limits still apply.
    """
    reader = _Reader(data, limits, strict)
    structs = reader.structs()
    deletes = reader.delete_set()
    if reader.pos != len(data):
        raise refused("trailing bytes after the delete set")
    return DecodedUpdate(data, structs, deletes)


class _Reader:
    __slots__ = ("data", "limits", "pos", "strict")

    def __init__(self, data: bytes, limits: UpdateLimits, strict: bool) -> None:
        self.data = data
        self.pos = 0
        self.limits = limits
        self.strict = strict

    # -- lib0 primitives ----------------------------------------------------------------------

    def byte(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise refused("truncated")
        self.pos = pos + 1
        return self.data[pos]

    def uint(self) -> int:
        data, pos = self.data, self.pos
        if pos < len(data) and data[pos] < 0x80:  # one byte: the common case
            self.pos = pos + 1
            return data[pos]
        value = shift = 0
        while True:
            if pos >= len(data):
                raise refused("truncated varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 56:
                raise refused("varint too long")
        if value > MAX_VAR_UINT:
            raise refused("varint out of range")
        self.pos = pos
        return value

    def skip_int(self) -> None:
        """A lib0 signed varint (sign in the first byte's 0x40 bit)."""
        for _ in range(10):
            if self.byte() < 0x80:
                return
        raise refused("varint too long")

    def skip(self, count: int) -> None:
        end = self.pos + count
        if end > len(self.data):
            raise refused("truncated")
        self.pos = end

    def raw_bytes(self) -> bytes:
        length = self.uint()
        start = self.pos
        self.skip(length)
        return self.data[start : self.pos]

    def string(self) -> str:
        try:
            return self.raw_bytes().decode()
        except UnicodeDecodeError:
            raise refused("a string that is not UTF-8") from None

    def id(self) -> ID:
        client, clock = self.uint(), self.uint()
        if self.strict and clock >= MAX_CLOCK:  # no item can have it (see clock_range)
            raise refused(f"a reference to clock {clock}, out of range")
        return client, clock

    def clock_range(self, clock: int, length: int) -> None:
        if clock + length > MAX_CLOCK:
            raise refused(f"clock {clock} + {length} out of range")

    # -- values ---------------------------------------------------------------------------------

    def skip_any(self) -> None:
        """One lib0 `any` value, read without recursion and no deeper than the limit."""
        max_depth = self.limits.max_depth
        # Per open array or object: values still to read, and whether each has a key first.
        remaining: list[int] = [1]
        keyed: list[bool] = [False]
        while remaining:
            if remaining[-1] == 0:
                remaining.pop()
                keyed.pop()
                continue
            remaining[-1] -= 1
            if keyed[-1]:
                self.skip(self.uint())
            tag = self.byte()
            if tag in (127, 126, 121, 120):  # undefined, null, false, true
                continue
            if tag == 125:
                self.skip_int()
            elif tag == 124:
                self.skip(4)
            elif tag in (123, 122):  # float64, bigint64
                self.skip(8)
            elif tag in (119, 116):  # string, bytes
                self.skip(self.uint())
            elif tag in (118, 117):  # object, array
                if len(remaining) >= max_depth:
                    raise refused(f"a value nested deeper than {max_depth}", "depth")
                remaining.append(self.uint())
                keyed.append(tag == 118)
            else:
                raise refused(f"unknown value type {tag}")

    def json_text(self) -> None:
        """A JSON string (embeds, format attributes): its nesting is bounded as `any`'s is."""
        _check_json_depth(self.string(), self.limits.max_depth)

    # -- structs --------------------------------------------------------------------------------

    def structs(self) -> list[Struct]:
        limits = self.limits
        structs: list[Struct] = []
        run = 0  # consecutive items yrs would squash into one
        seen: set[int] = set()
        for _ in range(self.uint()):
            count = self.uint()
            client = self.uint()
            clock = self.uint()
            if count == 0:  # Yjs never writes one; yrs panics on it (unwraps its first struct)
                raise refused(f"client {client} with no structs")
            # Yjs writes each client once; twice could give one clock two contents, which yrs
            # and Yjs resolve differently.
            if self.strict and client in seen:
                raise refused(f"client {client} twice in one update")
            seen.add(client)
            if len(structs) + count > limits.max_structs:
                raise refused(f"more than {limits.max_structs} structs", "limits")
            previous: Struct | None = None
            for _ in range(count):
                struct = self.struct(client, clock)
                self.clock_range(clock, struct.length)
                if (
                    previous is not None
                    and struct.origin == (client, clock - 1)
                    and struct.kind == previous.kind
                    and struct.parent is None
                    and struct.kind in (STRING, ANY, DELETED)
                ):
                    run += 1
                    if run > limits.max_unmerged_run:
                        raise refused(
                            f"more than {limits.max_unmerged_run} unmerged items", "limits"
                        )
                else:
                    run = 0
                structs.append(struct)
                previous = struct
                clock += struct.length
        return structs

    def struct(self, client: int, clock: int) -> Struct:
        info = self.byte()
        kind = info & (CONTENT_BITS if self.strict else YRS_CONTENT_BITS)
        if kind in (GC, SKIP):
            length = self.uint()
            if length == 0:
                raise refused("an empty struct")
            return Struct(client, clock, length, kind, None, None, None, -1, ())
        origin = self.id() if info & HAS_ORIGIN else None
        right_origin = self.id() if info & HAS_RIGHT_ORIGIN else None
        parent: str | ID | None = None
        if not info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN):
            parent = self.string() if self.uint() == 1 else self.id()
            if info & HAS_PARENT_SUB:
                self.skip(self.uint())
        type_ref = -1
        surrogates: tuple[int, ...] = ()
        if kind == STRING:
            text = self.string()
            length = len(text)
            if not text.isascii():
                surrogates = _surrogate_clocks(text, clock)
                length += len(surrogates)
        elif kind in (DELETED, ANY):
            length = self.uint()
            if kind == ANY:
                for _ in range(length):
                    self.skip_any()
        elif kind == BINARY:
            self.skip(self.uint())
            length = 1
        elif kind == EMBED:
            self.json_text()
            length = 1
        elif kind == FORMAT:
            self.skip(self.uint())
            self.json_text()
            length = 1
        elif kind == TYPE:
            type_ref = self.uint()
            if type_ref == TYPE_XML_HOOK and self.strict:
                # yrs writes it back without its name, which no Yjs client can read: a late
                # joiner's sync, `GET /update` and every compaction would carry broken bytes.
                raise refused("an XmlHook (yrs drops its name)", "unsupported")
            if type_ref in (TYPE_XML_ELEMENT, TYPE_XML_HOOK):
                self.skip(self.uint())  # the node name
            elif type_ref not in KNOWN_TYPES and (self.strict or type_ref not in YRS_ONLY_TYPES):
                raise refused(f"unknown shared type {type_ref}", "unsupported")
            length = 1
        elif kind == JSON:
            if self.strict:
                raise refused(
                    "legacy JSON content (Yjs before 13), which yrs misreads", "unsupported"
                )
            length = self.uint()
            for _ in range(length + 1):  # as yrs reads it
                self.skip(self.uint())
        elif kind == DOC:
            if self.strict:
                raise refused("sub-documents (their options would not survive)", "unsupported")
            self.skip(self.uint())  # the guid
            self.skip_any()  # the options
            length = 1
        else:
            raise refused(f"unknown content type {kind}")
        if length == 0:
            raise refused("an empty struct")
        keyed = bool(info & HAS_PARENT_SUB) and parent is not None
        return Struct(
            client, clock, length, kind, origin, right_origin, parent, type_ref, surrogates, keyed
        )

    def delete_set(self) -> list[tuple[int, int, int]]:
        limit = self.limits.max_delete_ranges
        deletes: list[tuple[int, int, int]] = []
        for _ in range(self.uint()):
            client = self.uint()
            count = self.uint()
            if len(deletes) + count > limit:
                raise refused(f"more than {limit} delete ranges", "limits")
            for _ in range(count):
                clock = self.uint()
                length = self.uint()
                self.clock_range(clock, length)
                if length:
                    deletes.append((client, clock, length))
        return deletes


def _surrogate_clocks(text: str, clock: int) -> tuple[int, ...]:
    """Where the characters beyond the BMP start, counted in UTF-16 from `clock`."""
    clocks = []
    for char in text:
        if ord(char) > 0xFFFF:
            clocks.append(clock)
            clock += 2
        else:
            clock += 1
    return tuple(clocks)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKETS = re.compile(r"[\[\]{}]")


def _check_json_depth(text: str, max_depth: int) -> None:
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot nest deeper than it has brackets
    depth = 0
    for bracket in _JSON_BRACKETS.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            if depth > max_depth:
                raise refused(f"a value nested deeper than {max_depth}", "depth")
        else:
            depth -= 1
