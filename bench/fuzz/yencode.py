"""A typed Yjs update (v1) model and its encoder, byte for byte as Yjs and yrs write it.

References: Yjs `src/utils/UpdateEncoder.js` (UpdateEncoderV1), `src/structs/Item.js` (`write`),
`src/utils/encoding.js` (`writeStructs`, `writeClientsStructs`), lib0 `encoding.js`
(`writeVarUint`, `writeVarInt`, `writeAny`); yrs `update.rs` (`Update::decode`, `decode_block`),
`block.rs` (`ItemContent::decode`), `any.rs`, `id_set.rs`.

The model can say things no honest encoder says (an info byte that lies, strings that are not
UTF-8, parents and origins at once, nesting a million deep): the fuzzer needs exactly that.
Nothing here recurses, so any depth encodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeAlias

from bench.fuzz.lib0 import (
    AnyValue,
    RawString,
    Str,
    var_bytes,
    var_string,
    var_uint,
    write_any,
)

# Content refs: the low 5 bits of a struct's info byte.
REF_GC = 0
REF_DELETED = 1
REF_JSON = 2
REF_BINARY = 3
REF_STRING = 4
REF_EMBED = 5
REF_FORMAT = 6
REF_TYPE = 7
REF_ANY = 8
REF_DOC = 9
REF_SKIP = 10
HAS_ORIGIN = 0x80
HAS_RIGHT_ORIGIN = 0x40
HAS_PARENT_SUB = 0x20

# Type refs of ContentType (yrs `types/mod.rs`).
TYPE_ARRAY = 0
TYPE_MAP = 1
TYPE_TEXT = 2
TYPE_XML_ELEMENT = 3
TYPE_XML_FRAGMENT = 4
TYPE_XML_HOOK = 5
TYPE_XML_TEXT = 6
TYPE_WEAK = 7
TYPE_DOC = 9
TYPE_UNDEFINED = 15


@dataclass(frozen=True, slots=True)
class ID:
    client: int
    clock: int


# -- contents -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deleted:
    length: int
    ref = REF_DELETED


@dataclass(frozen=True, slots=True)
class JSONContent:
    """Yjs writes the count, then that many JSON texts; yrs reads one more text than the count
    says (`ItemContent::decode`), so honest Yjs JSON content does not decode in yrs."""

    values: tuple[Str, ...]  # JSON texts, one per element ("undefined" for undefined)
    count: int | None = None  # written instead of len(values)
    ref = REF_JSON


@dataclass(frozen=True, slots=True)
class Binary:
    data: bytes
    ref = REF_BINARY


@dataclass(frozen=True, slots=True)
class String:
    text: Str
    ref = REF_STRING


@dataclass(frozen=True, slots=True)
class Embed:
    json: Str
    ref = REF_EMBED


@dataclass(frozen=True, slots=True)
class Format:
    key: Str
    json: Str
    ref = REF_FORMAT


@dataclass(frozen=True, slots=True)
class TypeContent:
    type_ref: int
    name: Str | None = None  # XmlElement's node name (and Yjs's XmlHook name)
    ref = REF_TYPE


@dataclass(frozen=True, slots=True)
class AnyContent:
    values: tuple[AnyValue, ...]
    ref = REF_ANY


@dataclass(frozen=True, slots=True)
class DocContent:
    guid: Str
    opts: AnyValue = field(default_factory=dict)
    ref = REF_DOC


Content: TypeAlias = (
    Deleted | JSONContent | Binary | String | Embed | Format | TypeContent | AnyContent | DocContent
)

# -- structs ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GC:
    length: int


@dataclass(frozen=True, slots=True)
class Skip:
    length: int


@dataclass(frozen=True, slots=True)
class Item:
    """An item. `parent` is written only when neither origin is set (as Yjs does); a parent of
    None there writes no parent info at all. `info`, when set, is written instead of the byte
    the fields call for (the fields are still written as they are)."""

    content: Content
    origin: ID | None = None
    right_origin: ID | None = None
    parent: Str | ID | None = None
    parent_sub: Str | None = None
    info: int | None = None

    def info_byte(self) -> int:
        if self.info is not None:
            return self.info & 0xFF
        return (
            self.content.ref
            | (HAS_ORIGIN if self.origin is not None else 0)
            | (HAS_RIGHT_ORIGIN if self.right_origin is not None else 0)
            | (HAS_PARENT_SUB if self.parent_sub is not None else 0)
        )


Struct: TypeAlias = GC | Skip | Item


@dataclass(frozen=True, slots=True)
class ClientStructs:
    """One client's run of structs, the first at `clock`. `count`, when set, is the number
    written instead of the real one."""

    client: int
    clock: int
    structs: tuple[Struct, ...]
    count: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteSet:
    clients: tuple[tuple[int, tuple[tuple[int, int], ...]], ...] = ()  # client, (clock, len)...


@dataclass(frozen=True, slots=True)
class Update:
    clients: tuple[ClientStructs, ...] = ()
    delete_set: DeleteSet = DeleteSet()
    trailing: bytes = b""  # written after the delete set


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def content_length(content: Content) -> int:
    """The clock span of an item with this content (yrs and Yjs count strings in UTF-16)."""
    if isinstance(content, Deleted):
        return content.length
    if isinstance(content, JSONContent):
        return len(content.values)
    if isinstance(content, AnyContent):
        return len(content.values)
    if isinstance(content, String):
        text = content.text
        if isinstance(text, RawString):
            text = text.data.decode("utf-8", "replace")
        return utf16_length(text)
    return 1


def struct_length(block: Struct) -> int:
    if isinstance(block, GC | Skip):
        return block.length
    return content_length(block.content)


# -- structs and updates ------------------------------------------------------------------------


def _write_id(out: bytearray, id_: ID) -> None:
    out += var_uint(id_.client)
    out += var_uint(id_.clock)


def _write_content(out: bytearray, content: Content) -> None:
    if isinstance(content, Deleted):
        out += var_uint(content.length)
    elif isinstance(content, JSONContent):
        out += var_uint(len(content.values) if content.count is None else content.count)
        for text in content.values:
            out += var_string(text)
    elif isinstance(content, Binary):
        out += var_bytes(content.data)
    elif isinstance(content, String):
        out += var_string(content.text)
    elif isinstance(content, Embed):
        out += var_string(content.json)
    elif isinstance(content, Format):
        out += var_string(content.key)
        out += var_string(content.json)
    elif isinstance(content, TypeContent):
        out += var_uint(content.type_ref)
        if content.name is not None:
            out += var_string(content.name)
    elif isinstance(content, AnyContent):
        out += var_uint(len(content.values))
        for value in content.values:
            write_any(out, value)
    else:
        out += var_string(content.guid)
        write_any(out, content.opts)


def write_struct(out: bytearray, block: Struct) -> None:
    if isinstance(block, GC):
        out.append(REF_GC)
        out += var_uint(block.length)
        return
    if isinstance(block, Skip):
        out.append(REF_SKIP)
        out += var_uint(block.length)
        return
    out.append(block.info_byte())
    if block.origin is not None:
        _write_id(out, block.origin)
    if block.right_origin is not None:
        _write_id(out, block.right_origin)
    if block.origin is None and block.right_origin is None:
        if isinstance(block.parent, ID):
            out.append(0)
            _write_id(out, block.parent)
        elif block.parent is not None:
            out.append(1)
            out += var_string(block.parent)
        if block.parent_sub is not None:
            out += var_string(block.parent_sub)
    _write_content(out, block.content)


def encode_delete_set(delete_set: DeleteSet) -> bytes:
    out = bytearray(var_uint(len(delete_set.clients)))
    for client, ranges in delete_set.clients:
        out += var_uint(client)
        out += var_uint(len(ranges))
        for clock, length in ranges:
            out += var_uint(clock)
            out += var_uint(length)
    return bytes(out)


def encode_update(update: Update) -> bytes:
    out = bytearray(var_uint(len(update.clients)))
    for run in update.clients:
        out += var_uint(len(run.structs) if run.count is None else run.count)
        out += var_uint(run.client)
        out += var_uint(run.clock)
        for block in run.structs:
            write_struct(out, block)
    out += encode_delete_set(update.delete_set)
    out += update.trailing
    return bytes(out)


def encode_state_vector(clocks: dict[int, int]) -> bytes:
    out = bytearray(var_uint(len(clocks)))
    for client, clock in clocks.items():
        out += var_uint(client)
        out += var_uint(clock)
    return bytes(out)
