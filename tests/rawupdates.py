"""Yjs updates (v1) written byte by byte, for shapes no well-behaved client makes."""

from __future__ import annotations


def var_uint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def var_string(text: str) -> bytes:
    data = text.encode()
    return var_uint(len(data)) + data


def update(client: int, clock: int, structs: list[bytes], deletes: bytes = b"\x00") -> bytes:
    """One client's structs from `clock`, then a delete set (empty by default)."""
    return (
        b"\x01"
        + var_uint(len(structs))
        + var_uint(client)
        + var_uint(clock)
        + b"".join(structs)
        + deletes
    )


def delete_set(client: int, clock: int, length: int) -> bytes:
    return b"\x01" + var_uint(client) + b"\x01" + var_uint(clock) + var_uint(length)


def deleting(client: int, clock: int, length: int) -> bytes:
    """An update that only deletes [clock, clock + length) of `client`."""
    return b"\x00" + delete_set(client, clock, length)


def nested_any(depth: int) -> bytes:
    """A `meta` map entry whose value is an array nested `depth` deep (lib0 any)."""
    value = b"\x75\x01" * depth + b"\x7e"  # [[[...null...]]]
    item = b"\x28" + b"\x01" + var_string("meta") + var_string("deep") + b"\x01" + value
    return update(5, 0, [item])


def nested_maps(client: int, depth: int) -> bytes:
    """Y.Maps nested `depth` deep under the root map `m`, each the key `k` of its parent."""
    structs = [b"\x27\x01" + var_string("m") + var_string("k") + b"\x01"]
    structs += [
        b"\x27\x00" + var_uint(client) + var_uint(clock) + var_string("k") + b"\x01"
        for clock in range(depth - 1)
    ]
    return update(client, 0, structs)


def unmerged_typing(client: int, count: int) -> bytes:
    """`count` one-character items in the root text `codemirror`, each after the previous one,
    not merged (Yjs would send one item)."""
    structs = [b"\x04\x01" + var_string("codemirror") + var_string("a")]
    structs += [
        b"\x84" + var_uint(client) + var_uint(clock) + var_string("a") for clock in range(count - 1)
    ]
    return update(client, 0, structs)


def text_item(client: int, text: str) -> bytes:
    """`text` at the start of the root text `codemirror`, by `client` at clock 0."""
    return update(client, 0, [b"\x04\x01" + var_string("codemirror") + var_string(text)])


def empty_client_block(client: int, clock: int) -> bytes:
    """An update naming `client` with no structs: yrs panics on it (unwraps its first struct)
    when the document already holds that client."""
    return b"\x01\x00" + var_uint(client) + var_uint(clock) + b"\x00"
