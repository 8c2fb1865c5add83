"""Presence: the checks on each awareness state, the bounds on a connection and a room, who may
change an entry, and stale entries. Units on `Presence` with a hand-driven clock; then a real
server, where a refused state closes its sender alone."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import ClientConnection, connect

from collab_server.protocol import (
    AwarenessEntry,
    AwarenessMessage,
    ProtocolError,
    decode_awareness,
    decode_message,
    encode_awareness,
    encode_awareness_message,
)
from collab_server.protocol.awareness import PRESENCE_FULL, STATE_TOO_LARGE, check_state
from collab_server.protocol.messages import MessageType
from collab_server.rooms.peer import Peer
from collab_server.rooms.presence import Presence
from tests.conftest import RunningServer
from tests.yclient import yclient

pytestmark = pytest.mark.anyio

AT = {"type": None, "tname": "codemirror", "item": None, "assoc": 0}
AFTER = {"type": {"client": 7, "clock": 0}, "tname": None, "item": {"client": 7, "clock": 3}}


def state(**fields: object) -> str:
    return json.dumps({"user": {"name": "ann", "color": "#30bced"}, **fields})


# -- one state ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        state(),
        state(cursor={"anchor": AT, "head": AFTER}),
        state(cursor=None),
        state(cursor={"anchor": None, "head": None}),
        '{"deep": ' + "[" * 31 + "]" * 31 + "}",  # 32 deep with the object
        '{"name": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}',  # brackets in a string
        '{"x": 1e308, "y": -5}',
    ],
)
def test_what_editors_send_is_accepted(text: str) -> None:
    check_state(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"x": NaN}', "JSON.parse throws: newcomers see nobody after it"),
        ('{"x": Infinity}', "the same"),
        ('{"x": 1e999}', "a double out of range"),
        ("[" * 1000 + "]" * 1000, "json.loads recursed out of its stack on this"),
        ('{"x": ' + "[" * 40 + "]" * 40 + "}", "deeper than any editor's state"),
        ('{"x": [}', "not JSON"),
        (state(cursor={"anchor": {"item": {"client": 1, "clock": "x"}}, "head": AT}), "caret"),
        (state(cursor={"anchor": AT, "head": {"item": {"client": 1, "clock": -1}}}), "caret"),
        (state(cursor={"anchor": 3, "head": 5}), "yjs reads .item of a number"),
        (state(cursor={"anchor": {"item": None}, "head": AT}), "neither item nor type"),
        (json.dumps({"user": {"color": "red; position: fixed; inset: 0"}}), "style injection"),
        (json.dumps({"user": {"name": "x" * 129}}), "no caret label"),
    ],
)
def test_states_that_break_other_editors_are_refused(text: str, why: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        check_state(text)
    assert refused.value.code == 4400, why


# -- bounds, ownership, staleness ------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def peer() -> Peer:
    async def send(frame: bytes) -> None:
        pass

    async def close(code: int, reason: str) -> None:
        pass

    return Peer("room", send, close, queue_limit=100)


def entry(client: int, clock: int, text: str | None = None) -> AwarenessEntry:
    return AwarenessEntry(client, clock, state() if text is None else text)


def test_a_connection_over_its_bounds_is_refused_and_keeps_what_it_had() -> None:
    presence = Presence(max_peer_entries=3, max_peer_bytes=10_000)
    alice = peer()
    presence.apply([entry(1, 1), entry(2, 1)], alice)
    with pytest.raises(ProtocolError) as refused:
        presence.apply([entry(3, 1), entry(4, 1)], alice)
    assert refused.value.code == PRESENCE_FULL
    assert {e.client_id for e in presence.entries()} == {1, 2}
    with pytest.raises(ProtocolError) as too_big:
        presence.apply([entry(1, 2, json.dumps({"pad": "x" * 10_000}))], alice)
    assert too_big.value.code == PRESENCE_FULL
    assert presence.entries()[0] == entry(1, 1)


def test_the_room_is_bounded_in_entries_and_bytes() -> None:
    presence = Presence(max_room_entries=2, max_room_bytes=1_000)
    presence.apply([entry(1, 1)], peer())
    bob = peer()
    presence.apply([entry(2, 1)], bob)
    with pytest.raises(ProtocolError) as full:
        presence.apply([entry(3, 1)], peer())
    assert full.value.code == PRESENCE_FULL
    with pytest.raises(ProtocolError):
        presence.apply([entry(2, 2, json.dumps({"pad": "x" * 1_000}))], bob)
    assert len(presence) == 2


def test_a_state_over_its_size_is_refused_before_it_is_parsed() -> None:
    presence = Presence(max_state_bytes=1024)
    big = encode_awareness([entry(1, 1, json.dumps({"pad": "x" * 2000}))])
    with pytest.raises(ProtocolError) as refused:
        presence.decode(big)
    assert refused.value.code == STATE_TOO_LARGE


def test_another_connection_cannot_overwrite_or_remove_an_entry() -> None:
    presence = Presence()
    alice, mallory = peer(), peer()
    presence.apply([entry(1, 1)], alice)
    impostor = entry(1, 5, json.dumps({"user": {"name": "mallory"}}))
    assert presence.apply([impostor], mallory) == []
    assert presence.apply([AwarenessEntry(1, 9, "null")], mallory) == []
    assert presence.entries() == [entry(1, 1)]
    # Alice's own changes still count, the echo of an older one does not.
    assert presence.apply([entry(1, 2)], alice) == [entry(1, 2)]
    assert presence.apply([entry(1, 1)], alice) == []


def test_a_reconnected_client_takes_over_when_its_old_socket_goes() -> None:
    presence = Presence()
    old, new = peer(), peer()
    presence.apply([entry(1, 1)], old)
    presence.apply([entry(1, 2)], new)  # the client reconnected before the server saw it go
    assert presence.entries() == [entry(1, 1)]
    assert presence.remove_peer(old) == [entry(1, 2)]  # no removal: it is back at once
    assert presence.entries() == [entry(1, 2)]
    assert presence.remove_peer(new) == [AwarenessEntry(1, 2, "null")]
    assert len(presence) == 0


def test_a_state_not_renewed_goes_stale_and_its_removal_is_relayed() -> None:
    clock = Clock()
    presence = Presence(timeout_seconds=30, now=clock)
    alice, bob = peer(), peer()
    presence.apply([entry(1, 1)], alice)
    clock.now += 20
    presence.apply([entry(2, 1)], bob)
    clock.now += 15  # alice's is 35 s old, bob's 15 s
    assert [e.client_id for e in presence.entries()] == [2]
    assert presence.expire() == [AwarenessEntry(1, 1, "null")]
    assert presence.expire() == []
    # A renewal keeps a state fresh.
    presence.apply([entry(2, 2)], bob)
    clock.now += 25
    assert presence.expire() == []


def test_the_greeting_is_built_once_and_follows_every_change() -> None:
    clock = Clock()
    presence = Presence(timeout_seconds=30, now=clock)
    alice, bob = peer(), peer()
    assert presence.greeting() is None  # nobody: nothing to greet with
    presence.apply([entry(1, 1)], alice)
    clock.now += 20
    presence.apply([entry(2, 1)], bob)
    first = presence.greeting()
    assert first == encode_awareness_message(encode_awareness([entry(1, 1), entry(2, 1)]))
    assert presence.greeting() is first  # a burst of joins shares one encoding
    presence.apply([entry(2, 2)], bob)
    assert presence.greeting() == encode_awareness_message(
        encode_awareness([entry(1, 1), entry(2, 2)])
    )
    clock.now += 15  # alice's state is stale: a newcomer is not greeted with it
    presence.expire()
    assert presence.greeting() == encode_awareness_message(encode_awareness([entry(2, 2)]))
    presence.remove_peer(bob)
    assert presence.greeting() is None


# -- a real server ---------------------------------------------------------------------------


async def test_a_refused_state_closes_its_sender_only(server: RunningServer) -> None:
    async with yclient(server.ws_url, "presence") as alice:
        alice.set_awareness(1, {"user": {"name": "alice"}})
        async with connect(f"{server.ws_url}/presence") as mallory:
            poisoned = encode_awareness([AwarenessEntry(99, 1, '{"cursor": NaN}')])
            await mallory.send(encode_awareness_message(poisoned))
            await mallory.wait_closed()
            assert mallory.close_code == 4400
        async with connect(f"{server.ws_url}/presence") as big:
            huge = encode_awareness([AwarenessEntry(98, 1, json.dumps({"x": "y" * 1_000_000}))])
            await big.send(encode_awareness_message(huge))
            await big.wait_closed()
            assert big.close_code == STATE_TOO_LARGE
        alice.text.insert(0, "still here")
        async with yclient(server.ws_url, "presence") as bob:
            await bob.wait_until(lambda: alice.doc.client_id in bob.awareness)
            assert 99 not in bob.awareness and 98 not in bob.awareness
            assert str(bob.text) == "still here"
        assert alice.close_code is None


async def _next_states(websocket: ClientConnection) -> dict[int, str]:
    """The states in the next awareness message the server sends (others skipped)."""
    async with asyncio.timeout(10):
        while True:
            message = decode_message(await websocket.recv(decode=False))
            if isinstance(message, AwarenessMessage):
                return {entry.client_id: entry.state for entry in decode_awareness(message.payload)}


async def test_a_query_is_answered_with_every_current_state(server: RunningServer) -> None:
    """Answered from the message built once per change, as a newcomer's greeting is."""
    query = bytes((MessageType.QUERY_AWARENESS,))
    async with yclient(server.ws_url, "queried") as alice:
        alice.set_awareness(1, {"user": {"name": "alice"}})
        async with connect(f"{server.ws_url}/queried") as asker:
            greeting = await _next_states(asker)
            assert greeting[alice.doc.client_id] == json.dumps({"user": {"name": "alice"}})
            await asker.send(query)
            assert await _next_states(asker) == greeting
            alice.set_awareness(2, {"user": {"name": "alice 2"}})
            changed = await _next_states(asker)  # the change, relayed
            await asker.send(query)
            assert (
                await _next_states(asker)
                == changed
                == {alice.doc.client_id: json.dumps({"user": {"name": "alice 2"}})}
            )
