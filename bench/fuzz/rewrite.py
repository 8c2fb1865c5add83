"""Rewrites of whole updates: every client id renamed (reused sessions, readable reproducers),
and byte-level mutations that ignore the structure.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from bench.fuzz.ydecode import decode_update
from bench.fuzz.yencode import ID, DeleteSet, Item, Update, encode_update


def rename_clients(updates: list[bytes], name: Callable[[int], int]) -> list[bytes]:
    """The updates with every client id (structs, origins, parents, delete set) passed through
    `name`; raises DecodeError if one does not decode."""

    def id_(value: ID | None) -> ID | None:
        return None if value is None else ID(name(value.client), value.clock)

    renamed = []
    for model in map(decode_update, updates):
        runs = []
        for run in model.clients:
            structs = tuple(
                replace(
                    block,
                    origin=id_(block.origin),
                    right_origin=id_(block.right_origin),
                    parent=id_(block.parent) if isinstance(block.parent, ID) else block.parent,
                )
                if isinstance(block, Item)
                else block
                for block in run.structs
            )
            runs.append(replace(run, client=name(run.client), structs=structs))
        ds = tuple((name(client), ranges) for client, ranges in model.delete_set.clients)
        renamed.append(encode_update(Update(tuple(runs), DeleteSet(ds))))
    return renamed


def mutate_bytes(rng: random.Random, data: bytes, other: bytes) -> tuple[str, bytes]:
    """One byte-level mutation; `other` is a second update to splice from."""
    buffer = bytearray(data)
    roll = rng.randrange(6)
    if roll == 0 and buffer:
        return "truncate", bytes(buffer[: rng.randrange(len(buffer))])
    if roll == 1 and buffer:
        for _ in range(rng.randint(1, 4)):
            buffer[rng.randrange(len(buffer))] ^= 1 << rng.randrange(8)
        return "bit_flip", bytes(buffer)
    if roll == 2 and buffer:
        position = rng.randrange(len(buffer))
        buffer[position] = rng.choice([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x75, 0x76, 0x08, 0x07])
        return "byte_set", bytes(buffer)
    if roll == 3:
        position = rng.randint(0, len(buffer))
        chunk = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        return "insert", bytes(buffer[:position] + chunk + buffer[position:])
    if roll == 4 and other:
        cut = rng.randint(0, len(buffer))
        return "splice", bytes(buffer[:cut]) + other[rng.randrange(len(other)) :]
    return "append", data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
