"""The update decoder's rules that need no document: shapes Yjs never writes, each refused before
yrs sees it, while what pycrdt and Yjs do write is accepted. Reproducers from bench/fuzz."""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import pytest
from pycrdt import Doc, Map, Text, merge_updates

from bench.fuzz.corpus import LATER
from collab_server.protocol.update import MAX_CLOCK, UpdateLimits, UpdateRefused, decode_update
from collab_server.rooms import shape as shape_module
from collab_server.rooms.shape import DocumentShape
from tests.rawupdates import text_item, update, var_string, var_uint

LIMITS = UpdateLimits()


def refused(data: bytes) -> str:
    with pytest.raises(UpdateRefused) as refusal:
        decode_update(data, LIMITS)
    return str(refusal.value)


def test_what_pycrdt_writes_is_accepted() -> None:
    doc: Doc[Any] = Doc()
    text = doc.get("codemirror", type=Text)
    meta = doc.get("meta", type=Map)
    text.insert(0, "héllo 😀 wörld\n")
    text.insert(3, "x")
    del text[1:4]
    meta["language"] = "python"
    decoded = decode_update(doc.get_update(), LIMITS)
    assert decoded.structs


def test_a_client_twice_in_one_update_is_refused() -> None:
    # Client 1 twice, both runs at clock 1 ('b' and 'c'): one clock, two contents, which the
    # server and Yjs clients could resolve differently (bench/fuzz corpus client-twice-same-clock).
    text = b"\x04\x01" + var_string("t")
    twice = (
        b"\x02"
        + (b"\x01" + var_uint(1) + var_uint(1) + text + var_string("b"))
        + (b"\x01" + var_uint(1) + var_uint(1) + text + var_string("c"))
        + b"\x00"
    )
    assert "twice" in refused(twice)
    # Read from the store (not strict) it is still read, as before.
    assert len(decode_update(twice, LIMITS, strict=False).structs) == 2


@pytest.mark.parametrize("reference", ["origin", "right origin", "parent"])
def test_a_reference_past_the_last_possible_clock_is_refused(reference: str) -> None:
    far = var_uint(1) + var_uint(MAX_CLOCK)
    struct = {
        "origin": b"\x84" + far + var_string("a"),
        "right origin": b"\x44" + far + var_string("a"),
        "parent": b"\x04\x00" + far + var_string("a"),
    }[reference]
    assert "out of range" in refused(update(2, 0, [struct]))
    near = var_uint(1) + var_uint(MAX_CLOCK - 1)
    decode_update(update(2, 0, [struct.replace(far, near)]), LIMITS)


def test_items_placed_from_the_start_of_a_long_text_are_bounded() -> None:
    """yrs places an item with no left origin by walking the list from its start: 500 of them,
    each before the last, in one update against a fuzzed 9,000-character text took 1.9 s.
    Typing at the start of a long text, a keystroke an update, is still accepted."""
    shape = DocumentShape(max_depth=128, max_scan=100_000)
    writer: Doc[Text] = Doc(client_id=1)
    text = writer.get("codemirror", type=Text)
    typed: list[bytes] = []
    writer.observe(lambda event: typed.append(event.update))
    for number in range(2000):  # 2,000 items, each after the one before
        text.insert(len(text), "x" if number % 2 else "é")
    for keystroke in typed:
        shape.admit(decode_update(keystroke, LIMITS))
    typed.clear()
    for _ in range(100):  # at the very start, one keystroke an update
        text.insert(0, "s")
    for keystroke in typed:
        shape.admit(decode_update(keystroke, LIMITS))
    # One update: an item at the start, then 100 more each placed before the previous one.
    attack = [b"\x04\x01" + var_string("codemirror") + var_string("a")]
    attack += [b"\x44" + var_uint(9) + var_uint(clock) + var_string("a") for clock in range(100)]
    with pytest.raises(UpdateRefused) as refusal:
        shape.admit(decode_update(update(9, 0, attack), LIMITS))
    assert refusal.value.kind == "limits"
    shape.admit(decode_update(update(9, 0, attack[:10]), LIMITS))  # a few are fine


@pytest.mark.parametrize(
    "reproducer",
    [
        "0101a786f9999ed6a601000701017405010000",  # an XmlHook in root "t"
        # an XmlElement "div" in root "xml" with an attribute, and an XmlHook inside it
        "0104818fe4dbe6e6890c00070103786d6c03036469762800818fe4dbe6e6890c0005636c617373017701630700"
        "818fe4dbe6e6890c0005000400818fe4dbe6e6890c020bf09f91a9e2808df09f92bb00",
    ],
)
def test_an_xml_hook_is_refused(reproducer: str) -> None:
    """Found by the million-frame fuzz run: accepted, yrs wrote the room back without the hook's
    name, and Yjs threw "Unexpected end of array" on that (a late joiner's sync, GET /update)."""
    assert "XmlHook" in refused(bytes.fromhex(reproducer))
    # Read from the store (not strict), as rooms stored before this rule were written.
    decode_update(bytes.fromhex(reproducer), LIMITS, strict=False)


def test_other_content_for_clocks_that_wait_is_refused_and_a_resend_is_not() -> None:
    """The million-frame fuzz run's late-joiner-diverges: the first update's items wait for a
    parent nobody sent; the second sends other items at the same clocks. Yjs kept the first
    pending and yrs placed the second, so late joiners got another text than live clients."""
    (case,) = (case for case in LATER if case.name == "late-joiner-diverges")
    first, second = case.updates
    shape = DocumentShape(max_depth=128)
    shape.admit(decode_update(first, LIMITS))
    with pytest.raises(UpdateRefused) as refusal:
        shape.admit(decode_update(second, LIMITS))
    assert "wait for a missing update" in str(refusal.value)
    shape.admit(decode_update(first, LIMITS))  # the same items sent again (a reconnect) pass


def test_a_snapshot_of_interleaved_typing_is_checked_in_one_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A snapshot lists its items client by client, so most of them name an origin that comes
    later in it and wait. Every item waiting on a client was retried whenever that client placed
    anything: a room of ten typists' 12,000 keystrokes took 36 s to check at load and at every
    compaction. Now a placed range wakes only what waits inside it."""
    typists: list[Doc[Any]] = [Doc() for _ in range(10)]
    for step in range(200):
        for index, typist in enumerate(typists):
            text = typist.get("codemirror", type=Text)
            before = typist.get_state()
            text.insert(min(step * 10 + index, len(text)), "abc"[(step + index) % 3])
            keystroke = typist.get_update(before)
            for other in typists:
                if other is not typist:
                    other.apply_update(keystroke)
    snapshot = decode_update(typists[0].get_update(), LIMITS, strict=False)
    resolves = 0
    resolve = DocumentShape._resolve

    def counted(shape: DocumentShape, struct: Any) -> Any:
        nonlocal resolves
        resolves += 1
        return resolve(shape, struct)

    monkeypatch.setattr(DocumentShape, "_resolve", counted)
    shape = DocumentShape(max_depth=128)
    shape.admit(snapshot, strict=False)
    assert shape.pending_items == 0
    assert len(snapshot.structs) == 2000  # one keystroke each: yrs did not join them
    # Once when it is placed, once when what it waits for is: before, 204,000 times in all.
    assert resolves <= 2 * len(snapshot.structs)


def test_an_item_waiting_inside_an_emoji_refuses_only_the_update_that_places_it() -> None:
    """An item that waits for a missing id and names the low half of an emoji as its right
    neighbour would be placed between the halves once that id arrives. Only the update bringing
    the id is refused: before, any update from that id's client retried it and was refused, so
    a client's unrelated edits were refused while such an item waited."""
    shape = DocumentShape(max_depth=128)
    waits = 0xC4  # a string with an origin and a right origin
    between = update(
        3,
        0,
        [bytes([waits]) + var_uint(4) + var_uint(5) + var_uint(2) + var_uint(1) + var_string("x")],
    )
    shape.admit(decode_update(between, LIMITS))  # waits for (4, 5)
    shape.admit(decode_update(text_item(2, "😀"), LIMITS))  # (2, 0) and (2, 1): one emoji
    assert shape.pending_items == 1
    shape.admit(decode_update(text_item(4, "hello"), LIMITS))  # (4, 0) to (4, 4): unrelated
    after = update(4, 5, [b"\x84" + var_uint(4) + var_uint(4) + var_string("!")])
    with pytest.raises(UpdateRefused) as refusal:
        shape.admit(decode_update(after, LIMITS))
    assert "surrogate pair" in str(refusal.value)
    assert shape.pending_items == 1  # nothing recorded


def parked(waiting_for: int, parker: int, count: int) -> tuple[bytes, bytes]:
    """(the update of client `waiting_for`'s `count` one-letter items, the update of `parker`'s
    `count` items typed after each of them): sent alone, the second one's items all wait."""
    absent: Doc[Any] = Doc(client_id=waiting_for)
    for _ in range(count):
        absent.get("codemirror", type=Text).insert(0, "b")
    typist: Doc[Any] = Doc(client_id=parker)
    typist.apply_update(absent.get_update())
    before = typist.get_state()
    for index in range(count):
        typist.get("codemirror", type=Text).insert(2 * index + 1, "a")
    return absent.get_update(), typist.get_update(before)


def steps_in_shape(shape: DocumentShape, update: bytes) -> int:
    """Lines run and frames entered in `rooms/shape.py` while `shape` admits `update`."""
    steps = 0

    def trace(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal steps
        if frame.f_code.co_filename == shape_module.__file__:
            steps += 1
        return trace

    decoded = decode_update(update, LIMITS)
    sys.settrace(trace)
    try:
        shape.admit(decoded)
    finally:
        sys.settrace(None)
    return steps


def test_what_waits_is_not_gone_over_again_for_every_update() -> None:
    """A client may park up to `max_pending` items that wait for ids nobody sent. Each later
    update copied them (for a refusal to restore) and scanned them for shared types: 900 parked
    items made every keystroke in the room cost 354 µs to check instead of 8."""
    _, waits = parked(waiting_for=2, parker=1, count=200)
    crowded, empty = DocumentShape(max_depth=128), DocumentShape(max_depth=128)
    crowded.admit(decode_update(waits, LIMITS))
    assert crowded.pending_items == 200
    typist: Doc[Any] = Doc(client_id=3)
    for index in range(5):
        before = typist.get_state()
        typist.get("notes", type=Text).insert(index, "c")
        keystroke = typist.get_update(before)
        # The same steps with or without them (before: 1,000 more for each keystroke).
        assert steps_in_shape(crowded, keystroke) == steps_in_shape(empty, keystroke)
    assert crowded.pending_items == 200


def test_a_refused_update_leaves_what_waits_as_it_was() -> None:
    # The refused update brings what 50 parked items wait for (they are placed, then taken back)
    # and parks 61 more (over the bound of 60): afterwards the 50 wait as before, and the ids
    # they wait for still wake them.
    shape = DocumentShape(max_depth=128, max_pending=60)
    arrives, waits = parked(waiting_for=2, parker=1, count=50)
    shape.admit(decode_update(waits, LIMITS))
    _, too_many = parked(waiting_for=5, parker=4, count=61)
    with pytest.raises(UpdateRefused, match="more than 60 items"):
        shape.admit(decode_update(merge_updates(arrives, too_many), LIMITS))
    assert shape.pending_items == 50
    shape.admit(decode_update(arrives, LIMITS))
    assert shape.pending_items == 0  # placed once what they wait for came
