"""lib0 variable-length encoding: unsigned varints, length-prefixed bytes and strings."""

from __future__ import annotations

from collab_server.protocol.errors import ProtocolError

# lib0 decodes varints into JavaScript numbers; anything past 2**53 is not a valid client value.
MAX_VAR_UINT = 2**53 - 1


def write_var_uint(value: int) -> bytes:
    if value < 0:
        raise ValueError("var uint must not be negative")
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def write_var_bytes(data: bytes) -> bytes:
    return write_var_uint(len(data)) + data


def write_var_string(text: str) -> bytes:
    return write_var_bytes(text.encode())


class Reader:
    """Reads lib0-encoded values from a buffer; every overrun raises `ProtocolError`."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def at_end(self) -> bool:
        return self._pos >= len(self._data)

    def read_var_uint(self) -> int:
        data = self._data
        value = 0
        shift = 0
        while True:
            if self._pos >= len(data):
                raise ProtocolError("truncated varint")
            byte = data[self._pos]
            self._pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 56:
                raise ProtocolError("varint too long")
        if value > MAX_VAR_UINT:
            raise ProtocolError("varint out of range")
        return value

    def read_var_bytes(self) -> bytes:
        length = self.read_var_uint()
        end = self._pos + length
        if end > len(self._data):
            raise ProtocolError("truncated payload")
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def read_var_string(self) -> str:
        try:
            return self.read_var_bytes().decode()
        except UnicodeDecodeError as error:
            raise ProtocolError("string is not UTF-8") from error

    def expect_end(self) -> None:
        if not self.at_end:
            raise ProtocolError("trailing bytes after message")
