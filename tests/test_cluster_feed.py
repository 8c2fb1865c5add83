"""A room's feed: what other processes publish is applied in the store's order, no number
skipped, and what a catch-up read brings is not applied twice."""

from __future__ import annotations

import pytest

from collab_server.cluster.feed import RoomFeed
from collab_server.cluster.messages import (
    BadBusMessage,
    StoredUpdate,
    decode_stored_update,
)


def place(feed: RoomFeed) -> tuple[int, int | None]:
    """How far the room holds every update, and the first one it lacks (if it knows of one)."""
    return feed.through, feed.missing


def test_updates_in_order_apply_at_once() -> None:
    feed = RoomFeed(through=4)
    assert feed.offer((5,), b"u5") == [b"u5"]
    assert feed.offer((6, 7), b"u6+7") == [b"u6+7"]
    assert place(feed) == (7, None)


def test_an_update_waits_for_the_ones_numbered_before_it() -> None:
    feed = RoomFeed(through=4)
    assert feed.offer((7,), b"u7") == []
    assert feed.offer((6,), b"u6") == []
    assert place(feed) == (4, 5)
    assert feed.offer((5,), b"u5") == [b"u5", b"u6", b"u7"]
    assert place(feed) == (7, None)


def test_this_processs_own_appends_fill_holes() -> None:
    feed = RoomFeed(through=4)
    assert feed.offer((6,), b"u6") == []
    feed.applied([5])
    assert feed.release() == [b"u6"]
    feed.applied([8])  # ours, before 7 from elsewhere arrived: nobody waits for it
    assert place(feed) == (6, 7)
    assert feed.offer((7,), b"u7") == [b"u7"]
    assert feed.through == 8


def test_a_batch_may_skip_numbers_another_process_took() -> None:
    feed = RoomFeed(through=4)
    assert feed.offer((5, 7), b"u5+7") == [b"u5+7"]
    assert place(feed) == (5, 6)
    assert feed.offer((6,), b"u6") == [b"u6"]
    assert feed.through == 7


def test_what_the_room_holds_already_is_not_applied_again() -> None:
    feed = RoomFeed(through=4)
    assert feed.offer((3, 4), b"old") == []
    feed.applied([5])
    assert feed.offer((5,), b"ours, back") == []
    assert feed.offer((5, 6), b"partly new") == [b"partly new"]


def test_a_catch_up_holds_everything_then_applies_only_what_it_did_not_bring() -> None:
    feed = RoomFeed(through=4)
    feed.catching_up = True
    assert feed.offer((5,), b"u5") == []
    assert feed.offer((8,), b"u8") == []
    assert feed.offer((7,), b"u7") == []
    assert feed.offer((), b"buffered") == []
    # The read brought everything up to 7: 5 and 7 are in the room already.
    assert feed.caught_up(7) == [b"u8", b"buffered"]
    assert (place(feed), feed.held) == ((8, None), 0)


def test_after_a_catch_up_what_is_still_missing_keeps_the_rest_waiting() -> None:
    feed = RoomFeed(through=4)
    feed.catching_up = True
    assert feed.offer((9,), b"u9") == []
    assert feed.caught_up(7) == []
    assert (place(feed), feed.held) == ((7, 8), 1)


def test_a_failed_catch_up_applies_what_waits_in_order_and_keeps_the_hole() -> None:
    feed = RoomFeed(through=4)
    feed.catching_up = True
    assert feed.offer((7,), b"u7") == []
    assert feed.offer((6,), b"u6") == []
    assert feed.caught_up(None) == [b"u6", b"u7"]
    assert (place(feed), feed.held) == ((4, 5), 0)


def test_an_update_without_numbers_keeps_its_place_behind_what_came_before() -> None:
    feed = RoomFeed(through=4)
    assert feed.offer((), b"alone") == [b"alone"]
    assert feed.offer((6,), b"u6") == []
    assert feed.offer((), b"after u6") == []
    assert feed.offer((5,), b"u5") == [b"u5", b"u6", b"after u6"]


def test_the_store_tells_of_numbers_that_never_came() -> None:
    feed = RoomFeed(through=4)
    feed.stored(4)
    assert feed.missing is None
    feed.stored(6)
    assert place(feed) == (4, 5)


def test_stored_updates_travel_with_their_numbers() -> None:
    message = StoredUpdate((5, 6, 300), b"\x01\x02")
    assert decode_stored_update(message.encode()) == message
    assert decode_stored_update(StoredUpdate((), b"x").encode()) == StoredUpdate((), b"x")


@pytest.mark.parametrize("payload", [b"", b"\x01", b"\x01\x05\x05abc", b"\x01\x00\x01x"])
def test_a_malformed_update_message_is_refused(payload: bytes) -> None:
    with pytest.raises(BadBusMessage):
        decode_stored_update(payload)
