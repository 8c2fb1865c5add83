"""Decoding Yjs updates (v1) into the model of yencode, so valid updates can be mutated struct by
struct, and pycrdt's own output checks the encoder (a round trip must give the same bytes).

Strict where yrs is lenient: anything the model cannot hold raises `DecodeError`. Never
recursive, so a hostile update cannot overflow this process's stack.
"""

from __future__ import annotations

import struct

from bench.fuzz.lib0 import (
    ANY_ARRAY,
    ANY_BIGINT,
    ANY_BUFFER,
    ANY_FALSE,
    ANY_FLOAT32,
    ANY_FLOAT64,
    ANY_INTEGER,
    ANY_MAP,
    ANY_NULL,
    ANY_STRING,
    ANY_TRUE,
    ANY_UNDEFINED,
    UNDEFINED,
    AnyValue,
    BigInt,
    Float32,
)
from bench.fuzz.yencode import (
    GC,
    HAS_ORIGIN,
    HAS_PARENT_SUB,
    HAS_RIGHT_ORIGIN,
    ID,
    REF_ANY,
    REF_BINARY,
    REF_DELETED,
    REF_DOC,
    REF_EMBED,
    REF_FORMAT,
    REF_GC,
    REF_JSON,
    REF_SKIP,
    REF_STRING,
    REF_TYPE,
    TYPE_XML_ELEMENT,
    TYPE_XML_HOOK,
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

MAX_COUNT = 1 << 24  # more elements than that in a fuzz input is a lie about its length


class DecodeError(ValueError):
    pass


class Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise DecodeError("unexpected end")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def take(self, length: int) -> bytes:
        end = self.pos + length
        if end > len(self.data):
            raise DecodeError("unexpected end")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def var_uint(self) -> int:
        value = shift = 0
        while True:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7
            if shift > 70:
                raise DecodeError("var uint too long")

    def count(self) -> int:
        value = self.var_uint()
        if value > MAX_COUNT:
            raise DecodeError(f"count {value} too large")
        return value

    def var_int(self) -> int:
        byte = self.byte()
        negative = byte & 0x40
        value = byte & 0x3F
        shift = 6
        while byte & 0x80:
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            shift += 7
            if shift > 70:
                raise DecodeError("var int too long")
        return -value if negative else value

    def string(self) -> str:
        try:
            return self.take(self.var_uint()).decode()
        except UnicodeDecodeError as error:
            raise DecodeError("string is not UTF-8") from error

    def id(self) -> ID:
        return ID(self.var_uint(), self.var_uint())


def read_any(reader: Reader) -> AnyValue:
    """lib0 `readAny` with a stack of open containers instead of recursion."""
    # Each open container: (the list or dict, elements still to read, key for the next value).
    open_: list[tuple[list[AnyValue] | dict[str, AnyValue], int]] = []
    pending_key: list[str] = []
    while True:
        if open_ and isinstance(open_[-1][0], dict):
            pending_key.append(reader.string())
        value = _read_scalar_or_open(reader)
        if isinstance(value, _Open):
            open_.append((value.container, value.length))
            if value.length:
                continue
            value_done: AnyValue = value.container
            open_.pop()
        else:
            value_done = value
        # Attach the finished value to its parent, closing every parent it completes.
        while True:
            if not open_:
                return value_done
            container, remaining = open_[-1]
            if isinstance(container, dict):
                container[pending_key.pop()] = value_done
            else:
                container.append(value_done)
            remaining -= 1
            if remaining:
                open_[-1] = (container, remaining)
                break
            open_.pop()
            value_done = container


class _Open:
    __slots__ = ("container", "length")

    def __init__(self, container: list[AnyValue] | dict[str, AnyValue], length: int) -> None:
        self.container = container
        self.length = length


def _read_scalar_or_open(reader: Reader) -> AnyValue | _Open:
    tag = reader.byte()
    if tag == ANY_UNDEFINED:
        return UNDEFINED
    if tag == ANY_NULL:
        return None
    if tag == ANY_INTEGER:
        return reader.var_int()
    if tag == ANY_FLOAT32:
        return Float32(struct.unpack(">f", reader.take(4))[0])
    if tag == ANY_FLOAT64:
        value: float = struct.unpack(">d", reader.take(8))[0]
        return value
    if tag == ANY_BIGINT:
        return BigInt(struct.unpack(">q", reader.take(8))[0])
    if tag == ANY_FALSE:
        return False
    if tag == ANY_TRUE:
        return True
    if tag == ANY_STRING:
        return reader.string()
    if tag == ANY_MAP:
        return _Open({}, reader.count())
    if tag == ANY_ARRAY:
        return _Open([], reader.count())
    if tag == ANY_BUFFER:
        return reader.take(reader.var_uint())
    raise DecodeError(f"unknown any tag {tag}")


def _read_content(reader: Reader, ref: int) -> Content:
    if ref == REF_DELETED:
        return Deleted(reader.var_uint())
    if ref == REF_JSON:
        return JSONContent(tuple(reader.string() for _ in range(reader.count())))
    if ref == REF_BINARY:
        return Binary(reader.take(reader.var_uint()))
    if ref == REF_STRING:
        return String(reader.string())
    if ref == REF_EMBED:
        return Embed(reader.string())
    if ref == REF_FORMAT:
        return Format(reader.string(), reader.string())
    if ref == REF_TYPE:
        type_ref = reader.var_uint()
        name = reader.string() if type_ref in (TYPE_XML_ELEMENT, TYPE_XML_HOOK) else None
        return TypeContent(type_ref, name)
    if ref == REF_ANY:
        return AnyContent(tuple(read_any(reader) for _ in range(reader.count())))
    if ref == REF_DOC:
        return DocContent(reader.string(), read_any(reader))
    raise DecodeError(f"unknown content ref {ref}")


def read_struct(reader: Reader) -> Struct:
    info = reader.byte()
    ref = info & 0x1F
    if ref == REF_GC:
        return GC(reader.var_uint())
    if ref == REF_SKIP:
        return Skip(reader.var_uint())
    origin = reader.id() if info & HAS_ORIGIN else None
    right_origin = reader.id() if info & HAS_RIGHT_ORIGIN else None
    parent: str | ID | None = None
    parent_sub = None
    if origin is None and right_origin is None:
        parent = reader.string() if reader.var_uint() == 1 else reader.id()
        if info & HAS_PARENT_SUB:
            parent_sub = reader.string()
    # A parent-sub flag with origins is legal (Yjs sets it) but carries no string.
    keep_info = info if (info & HAS_PARENT_SUB and parent_sub is None) else None
    return Item(_read_content(reader, ref), origin, right_origin, parent, parent_sub, keep_info)


def read_delete_set(reader: Reader) -> DeleteSet:
    clients = []
    for _ in range(reader.count()):
        client = reader.var_uint()
        ranges = tuple((reader.var_uint(), reader.var_uint()) for _ in range(reader.count()))
        clients.append((client, ranges))
    return DeleteSet(tuple(clients))


def decode_update(data: bytes) -> Update:
    reader = Reader(data)
    runs = []
    for _ in range(reader.count()):
        count = reader.count()
        client = reader.var_uint()
        clock = reader.var_uint()
        runs.append(ClientStructs(client, clock, tuple(read_struct(reader) for _ in range(count))))
    delete_set = read_delete_set(reader)
    if reader.pos != len(data):
        raise DecodeError("trailing bytes after the delete set")
    return Update(tuple(runs), delete_set)


def decode_state_vector(data: bytes) -> dict[int, int]:
    reader = Reader(data)
    clocks = {}
    for _ in range(reader.count()):
        client = reader.var_uint()
        clocks[client] = reader.var_uint()
    if reader.pos != len(data):
        raise DecodeError("trailing bytes after the state vector")
    return clocks


def update_clocks(update: Update) -> dict[int, tuple[int, int]]:
    """Per client, the clock range [start, end) its structs claim."""
    ranges: dict[int, tuple[int, int]] = {}
    for run in update.clients:
        end = run.clock + sum(struct_length(block) for block in run.structs)
        start, old_end = ranges.get(run.client, (run.clock, run.clock))
        ranges[run.client] = (min(start, run.clock), max(old_end, end))
    return ranges
