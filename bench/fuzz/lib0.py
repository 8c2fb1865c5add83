"""lib0 encoding (Yjs's binary format): var uints, signed var ints, strings that need not be
UTF-8, and `any` values of any depth (written with a stack, never by recursion).

Reference: lib0 `encoding.js` (`writeVarUint`, `writeVarInt`, `writeVarString`, `writeAny`);
yrs `encoding/varint.rs` and `any.rs` read the same.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TypeAlias

# lib0 `any` tags.
ANY_UNDEFINED = 127
ANY_NULL = 126
ANY_INTEGER = 125
ANY_FLOAT32 = 124
ANY_FLOAT64 = 123
ANY_BIGINT = 122
ANY_FALSE = 121
ANY_TRUE = 120
ANY_STRING = 119
ANY_MAP = 118
ANY_ARRAY = 117
ANY_BUFFER = 116


@dataclass(frozen=True, slots=True)
class Undefined:
    """lib0's `undefined` (JSON has no such value)."""


UNDEFINED = Undefined()


@dataclass(frozen=True, slots=True)
class Float32:
    value: float


@dataclass(frozen=True, slots=True)
class BigInt:
    value: int  # written as a signed 64-bit big-endian integer (wrapped to 64 bits)


@dataclass(frozen=True, slots=True)
class RawString:
    """A lib0 string given as bytes: they need not be UTF-8, nor their length honest."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Nested:
    """`depth` arrays (or one-key maps) around `leaf`: deep values without deep Python objects."""

    depth: int
    leaf: AnyValue = None
    kind: str = "array"  # or "map"


Str: TypeAlias = str | RawString
AnyValue: TypeAlias = (
    Undefined
    | bool
    | int
    | float
    | Float32
    | BigInt
    | str
    | RawString
    | bytes
    | Nested
    | list["AnyValue"]
    | dict[str, "AnyValue"]
    | None
)


def _var_uint_slow(value: int) -> bytes:
    if value < 0:
        raise ValueError("var uint must not be negative")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


_SMALL = [_var_uint_slow(value) for value in range(1 << 14)]  # encoding is the hot path


def var_uint(value: int) -> bytes:
    if 0 <= value < 16384:
        return _SMALL[value]
    return _var_uint_slow(value)


def var_int(value: int) -> bytes:
    """lib0 `writeVarInt`: sign in bit 6 of the first byte, 6 value bits there, then 7 a byte."""
    negative = value < 0
    value = -value if negative else value
    out = bytearray([(0x80 if value > 0x3F else 0) | (0x40 if negative else 0) | (value & 0x3F)])
    value >>= 6
    while value > 0:
        out.append((0x80 if value > 0x7F else 0) | (value & 0x7F))
        value >>= 7
    return bytes(out)


def var_string(text: Str) -> bytes:
    data = text.data if isinstance(text, RawString) else text.encode("utf-8", "surrogatepass")
    return var_uint(len(data)) + data


def var_bytes(data: bytes) -> bytes:
    return var_uint(len(data)) + data


@dataclass(frozen=True, slots=True)
class _Key:
    text: str


def write_any(out: bytearray, value: AnyValue) -> None:
    """lib0 `writeAny`, with an explicit stack: a value nested 100,000 deep is fine."""
    stack: list[AnyValue | _Key] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Key):
            out += var_string(item.text)
        elif item is None:
            out.append(ANY_NULL)
        elif isinstance(item, Undefined):
            out.append(ANY_UNDEFINED)
        elif isinstance(item, bool):
            out.append(ANY_TRUE if item else ANY_FALSE)
        elif isinstance(item, int):
            out.append(ANY_INTEGER)
            out += var_int(item)
        elif isinstance(item, float):
            out.append(ANY_FLOAT64)
            out += struct.pack(">d", item)
        elif isinstance(item, Float32):
            out.append(ANY_FLOAT32)
            out += struct.pack(">f", item.value)
        elif isinstance(item, BigInt):
            out.append(ANY_BIGINT)
            out += struct.pack(">Q", item.value & 0xFFFF_FFFF_FFFF_FFFF)
        elif isinstance(item, str | RawString):
            out.append(ANY_STRING)
            out += var_string(item)
        elif isinstance(item, bytes):
            out.append(ANY_BUFFER)
            out += var_bytes(item)
        elif isinstance(item, Nested):
            wrapper = b"\x75\x01" if item.kind == "array" else b"\x76\x01\x01k"
            out += wrapper * item.depth
            stack.append(item.leaf)
        elif isinstance(item, list):
            out.append(ANY_ARRAY)
            out += var_uint(len(item))
            stack.extend(reversed(item))
        else:
            out.append(ANY_MAP)
            out += var_uint(len(item))
            for key, element in reversed(item.items()):
                stack.append(element)
                stack.append(_Key(key))


def encode_any(value: AnyValue) -> bytes:
    out = bytearray()
    write_any(out, value)
    return bytes(out)
