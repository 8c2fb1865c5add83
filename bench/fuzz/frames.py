"""y-protocols v1 frames around updates, and frame-level mutations: odd state vectors, lying
length prefixes, awareness entries with huge, NaN or deep JSON, unknown message types, truncated
varints, auth and query-awareness messages.

Message layout (y-protocols): sync = 0, then 0 (step 1: state vector), 1 (step 2: update) or
2 (update), then the payload as var bytes; awareness = 1, then var bytes holding
[count, (client, clock, JSON state string)...]; auth = 2 ...; query awareness = 3.
"""

from __future__ import annotations

import functools
import json
import random

from bench.fuzz.lib0 import (
    var_bytes,
    var_string,
    var_uint,
)
from bench.fuzz.mutate import BAD_UTF8, ODD_CLIENTS

SYNC, AWARENESS, AUTH, QUERY_AWARENESS = 0, 1, 2, 3
STEP1, STEP2, UPDATE = 0, 1, 2


def sync_frame(kind: int, payload: bytes) -> bytes:
    return bytes((SYNC, kind)) + var_bytes(payload)


def update_frame(update: bytes, rng: random.Random) -> bytes:
    # Clients send both: y-websocket answers the server's step 1 with a step 2.
    return sync_frame(STEP2 if rng.random() < 0.2 else UPDATE, update)


def awareness_frame(entries: list[tuple[int, int, bytes]]) -> bytes:
    payload = bytearray(var_uint(len(entries)))
    for client, clock, state in entries:
        payload += var_uint(client) + var_uint(clock) + var_bytes(state)
    return bytes((AWARENESS,)) + var_bytes(bytes(payload))


def cursor_state(rng: random.Random) -> bytes:
    state = {
        "user": {"name": rng.choice(["fuzz", "ø", "😀"]), "color": "#30bced"},
        "cursor": {"anchor": rng.randrange(100), "head": rng.randrange(100)},
    }
    return json.dumps(state).encode()


def _state_vector(rng: random.Random) -> tuple[str, bytes]:
    roll = rng.randrange(8)
    if roll == 0:
        return "sv_empty", b""
    if roll == 1:
        return "sv_zero", b"\x00"
    if roll == 2:
        entries = [(rng.choice(ODD_CLIENTS), rng.choice([0, 2**32, 2**53, 2**64])) for _ in "ab"]
        body = b"".join(var_uint(c) + var_uint(k) for c, k in entries)
        return "sv_huge", var_uint(len(entries)) + body
    if roll == 3:
        return "sv_many", _many_clients(rng.choice([1000, 20_000]))
    if roll == 4:
        return "sv_truncated", b"\x02\x81\x80"
    if roll == 5:
        return "sv_lying_count", var_uint(2**40) + b"\x01\x01"
    if roll == 6:
        return "sv_trailing", b"\x01\x01\x01\xff\xff"
    return "sv_overlong", b"\x01" + b"\x81" + b"\x80" * 12 + b"\x00" + b"\x00"


@functools.cache
def _many_clients(count: int) -> bytes:
    rng = random.Random(count)
    body = b"".join(var_uint(rng.randrange(2**53)) + var_uint(1) for _ in range(count))
    return var_uint(count) + body


def _awareness(rng: random.Random, own_client: int) -> tuple[str, bytes, bool]:
    """An awareness frame; the flag says whether the server should refuse it (close 4400)."""
    roll = rng.randrange(12)
    clock = rng.randrange(1, 1000)
    if roll <= 2:
        return "aw_cursor", awareness_frame([(own_client, clock, cursor_state(rng))]), False
    if roll == 3:
        # JSON that Python reads and browsers' JSON.parse does not.
        text = rng.choice([b"NaN", b'{"x": Infinity}', b"[-Infinity]", b'{"a": NaN}'])
        return "aw_nan", awareness_frame([(own_client, clock, text)]), False
    if roll == 4:
        depth = rng.choice([100, 1000, 5000, 100_000])
        return "aw_deep", awareness_frame([(own_client, clock, b"[" * depth + b"]" * depth)]), False
    if roll == 5:
        big = json.dumps({"user": {"name": "x" * rng.choice([10_000, 1_000_000])}}).encode()
        return "aw_huge", awareness_frame([(own_client, clock, big)]), False
    if roll == 6:
        entries = [(rng.choice(ODD_CLIENTS), rng.choice([0, 2**53 - 1]), b"null") for _ in "ab"]
        return "aw_odd_ids", awareness_frame(entries), False
    if roll == 7:
        entries = [(own_client + i, clock, cursor_state(rng)) for i in range(1000)]
        return "aw_many", awareness_frame(entries), False
    if roll == 8:
        colour = rng.choice([b'"red; position: fixed"', b'"#fff"', b"1", b'"url(x)"'])
        state = b'{"user": {"name": "x", "color": ' + colour + b"}}"
        return "aw_colour", awareness_frame([(own_client, clock, state)]), b";" in colour
    if roll == 9:
        return "aw_bad_utf8", awareness_frame([(own_client, clock, rng.choice(BAD_UTF8))]), True
    if roll == 10:
        return "aw_empty_state", awareness_frame([(own_client, clock, b"")]), False
    return "aw_clock_2_53", awareness_frame([(own_client, 2**53, b"{}")]), True


def protocol_frame(rng: random.Random, own_client: int, update: bytes) -> tuple[str, bytes, bool]:
    """A frame-level test: (kind, frame, whether the server should close the connection)."""
    roll = rng.randrange(20)
    if roll <= 3:
        kind, vector = _state_vector(rng)
        bad = kind in ("sv_truncated", "sv_lying_count", "sv_trailing", "sv_overlong")
        return f"sync1.{kind}", sync_frame(STEP1, vector), bad
    if roll <= 8:
        kind, frame, bad = _awareness(rng, own_client)
        return f"awareness.{kind}", frame, bad
    if roll == 9:
        body = sync_frame(UPDATE, update)
        cut = rng.randrange(1, max(2, len(body)))
        return "wrap.truncated_payload", body[:cut], True
    if roll == 10:
        return "wrap.trailing", sync_frame(UPDATE, update) + b"\x00", True
    if roll == 11:
        return "wrap.length_lie", bytes((SYNC, UPDATE)) + var_uint(2**40) + update, True
    if roll == 12:
        return (
            "wrap.sync_type",
            bytes((SYNC, rng.choice([3, 4, 127, 255]))) + var_bytes(update),
            True,
        )
    if roll == 13:
        kind_ = rng.choice([4, 5, 100, 2**21, 2**53 + 1])
        return "unknown_type", var_uint(kind_) + var_bytes(b"x"), True
    if roll == 14:
        frame = rng.choice([b"", b"\x80", b"\x00\x80", b"\x01\x80\x80", b"\x00\x02\xff", b"\x00"])
        return "truncated_varint", frame, True
    if roll == 15:
        payload = rng.choice([b"", b"\x00" + var_string("why"), bytes(range(20)), b"\xff" * 9])
        return "auth", bytes((AUTH,)) + payload, False
    if roll == 16:
        return "query_awareness", rng.choice([b"\x03", b"\x03"]), False
    if roll == 17:
        return "query_awareness.trailing", b"\x03\x00", True
    if roll == 18:
        return "wrap.empty_update", sync_frame(UPDATE, b""), True
    return "sync1.valid", sync_frame(STEP1, b"\x00"), False
