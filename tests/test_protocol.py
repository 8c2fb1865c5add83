"""The y-protocols codec: round trips, and every kind of garbage raises ProtocolError."""

from __future__ import annotations

import json

import pytest

from collab_server.protocol import (
    AuthMessage,
    AwarenessEntry,
    AwarenessMessage,
    ProtocolError,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    decode_awareness,
    decode_message,
    encode_awareness,
    encode_awareness_message,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)
from collab_server.protocol.varint import Reader, write_var_uint


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**53 - 1])
def test_var_uint_round_trip(value: int) -> None:
    reader = Reader(write_var_uint(value))
    assert reader.read_var_uint() == value
    assert reader.at_end


def test_var_uint_matches_lib0() -> None:
    # lib0 writes 300 as 0xAC 0x02.
    assert write_var_uint(300) == b"\xac\x02"


def test_messages_round_trip() -> None:
    payload = b"\x01\x02\x03"
    assert decode_message(encode_sync_step1(payload)) == SyncStep1(payload)
    assert decode_message(encode_sync_step2(payload)) == SyncStep2(payload)
    assert decode_message(encode_update(payload)) == SyncUpdate(payload)
    assert decode_message(encode_awareness_message(payload)) == AwarenessMessage(payload)
    assert decode_message(b"\x03") == QueryAwareness()
    assert decode_message(b"\x02\x00\x03abc") == AuthMessage(b"\x00\x03abc")


def test_awareness_round_trip() -> None:
    entries = [AwarenessEntry(7, 3, '{"user":{"name":"é"}}'), AwarenessEntry(9, 1, "null")]
    assert decode_awareness(encode_awareness(entries)) == entries
    assert entries[1].removed and not entries[0].removed


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "truncated varint"),
        (b"\x80", "truncated varint"),
        (b"\x00", "truncated varint"),
        (b"\x00\x02\x05ab", "truncated payload"),
        (b"\x00\x07\x00", "unknown sync message type 7"),
        (b"\x09", "unknown message type 9"),
        (b"\x00\x02\x01a\xff", "trailing bytes after message"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", "varint too long"),
    ],
)
def test_garbage_frames_raise(frame: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason) as caught:
        decode_message(frame)
    assert 4400 <= caught.value.code < 4500


@pytest.mark.parametrize(
    "payload",
    [
        b"\x01\x07\x01\x04{no}",  # state is not JSON: every other client would throw on it
        b"\x01\x07\x01\x05\xff\xfe\xfd\xfc\xfb",  # not UTF-8
        b"\x02\x07\x01\x02{}",  # announces two entries, carries one
    ],
)
def test_bad_awareness_payloads_raise(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_awareness(payload)


def _one_state(state: object) -> bytes:
    return encode_awareness([AwarenessEntry(7, 1, json.dumps(state))])


@pytest.mark.parametrize(
    "colour",
    ["#30bced", "#30bced33", "rebeccapurple", "rgb(1, 2, 3)", "hsl(120 50% 40% / 0.5)", None],
)
def test_user_colours_that_are_css_colours_pass(colour: str | None) -> None:
    state = {"user": {"name": "ann; }", "color": colour, "colorLight": colour}}
    assert decode_awareness(_one_state(state))[0].state == json.dumps(state)


@pytest.mark.parametrize(
    "user",
    [
        {"color": "red; position: fixed; inset: 0; z-index: 9"},
        {"colorLight": "#fff;background:url(https://evil.example/x)"},
        {"color": 'red"><img>'},
        {"color": 7},
        {"color": "x" * 65},
    ],
)
def test_user_colours_that_would_inject_css_raise(user: dict[str, object]) -> None:
    with pytest.raises(ProtocolError, match="not a CSS colour"):
        decode_awareness(_one_state({"user": user}))
