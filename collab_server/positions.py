"""Positions in text, converted between the three ways of counting them.

Browsers (CodeMirror, Yjs) count UTF-16 code units, Python counts code points, and pycrdt's Text
counts UTF-8 bytes. Every position that comes from outside is converted at the boundary.
"""

from __future__ import annotations


class PositionError(ValueError):
    """A position is outside the text or splits a character."""


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def index_from_utf16(text: str, offset: int) -> int:
    """The code point index of a UTF-16 offset into `text`."""
    if offset < 0:
        raise PositionError(f"offset {offset} is negative")
    encoded = text.encode("utf-16-le")
    if offset * 2 > len(encoded):
        raise PositionError(f"offset {offset} is past the end ({len(encoded) // 2})")
    try:
        return len(encoded[: offset * 2].decode("utf-16-le"))
    except UnicodeDecodeError:
        raise PositionError(f"offset {offset} splits a character") from None


def utf16_from_index(text: str, index: int) -> int:
    """The UTF-16 offset of a code point index into `text`."""
    return utf16_length(text[:index])


def utf8_from_index(text: str, index: int) -> int:
    """The UTF-8 byte offset of a code point index into `text` (what pycrdt's Text takes)."""
    return len(text[:index].encode())


def index_from_line_column(text: str, line: int, column: int) -> int:
    """The code point index of a 0-based line and a UTF-16 column on that line."""
    if line < 0 or column < 0:
        raise PositionError("line and column must not be negative")
    lines = text.split("\n")
    if line >= len(lines):
        raise PositionError(f"line {line} is past the last line ({len(lines) - 1})")
    start = sum(len(previous) + 1 for previous in lines[:line])
    return start + index_from_utf16(lines[line], column)
