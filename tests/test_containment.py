"""When yrs fails anyway: after an update was stored, or in a background job.

The checks in front of yrs refuse every failure found so far, so these tests make yrs fail on
purpose (the failing call is replaced; the panic is a real pyo3 PanicException) and check what
the server does with it: the update is taken back out of the store, the room's document is
rebuilt, the sender alone is closed, and nothing reaches the process or the other rooms.
"""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from typing import Any

import pytest
from pycrdt import Doc, Text

from collab_server.protocol import CloseCode
from collab_server.protocol.update import UpdateLimits
from collab_server.rooms import document, snapshot
from collab_server.rooms import room as room_module
from collab_server.rooms.document import CrdtFailure, Document
from collab_server.rooms.snapshot import check_stored
from tests.conftest import RunningServer
from tests.rawupdates import empty_client_block, text_item
from tests.yclient import newcomer_sees, yclient

pytestmark = pytest.mark.anyio

POISON = "POISON"


def real_panic() -> BaseException:
    """A PanicException raised by yrs itself (its class is not importable by name)."""
    doc: Doc[Any] = Doc()
    doc.apply_update(text_item(1, "ok"))
    try:
        doc.apply_update(empty_client_block(1, 10))
    except BaseException as error:
        return error
    raise AssertionError("yrs no longer panics on an empty client block")


async def test_an_update_yrs_fails_on_after_storing_is_taken_back(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply = document.apply_update

    def failing_apply(doc: Document, update: bytes) -> None:
        apply(doc, update)  # yrs may have taken part of it before it panicked
        if POISON.encode() in update:
            raise CrdtFailure("the CRDT core panicked: made up", panicked=True)

    monkeypatch.setattr(room_module, "apply_update", failing_apply)
    async with (
        yclient(server.ws_url, "hurt") as sender,
        yclient(server.ws_url, "hurt") as witness,
    ):
        sender.text.insert(0, "good;")
        await witness.wait_until(lambda: str(witness.text) == "good;")
        sender.text.insert(5, POISON)
        assert await sender.wait_closed() == CloseCode.UPDATE_REJECTED
        witness.text.insert(5, "more;")
        await newcomer_sees(server.ws_url, "hurt", "good;more;")
        assert witness.close_code is None
        assert POISON not in str(witness.text)
    stored = await server.registry.store.load("hurt")
    assert not any(POISON.encode() in update for update in stored.updates)
    async with server.http() as http:
        assert (await http.get("/api/rooms/hurt/text")).text == "good;more;"
        metrics = (await http.get("/metrics")).text
    assert 'collab_updates_refused_total{rule="crdt"} 1' in metrics


async def test_a_panic_in_a_background_job_leaves_everything_running(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compaction that panicked used to fail the registry's task group and cancel the
    lifespan: every peer closed, the store closed, every later write refused."""
    panicked = asyncio.Event()
    panic = real_panic()
    assert not isinstance(panic, Exception)

    def panicking_squash(*args: object, **kwargs: object) -> snapshot.Squashed | None:
        panicked.set()
        raise panic

    monkeypatch.setattr(snapshot, "squash", panicking_squash)
    async with yclient(server.ws_url, "compacted") as client:
        client.text.insert(0, "kept")
        await newcomer_sees(server.ws_url, "compacted", "kept")
    await asyncio.wait_for(panicked.wait(), 10)  # the room went idle and its compaction ran
    async with yclient(server.ws_url, "other") as other:
        other.text.insert(0, "fine")
        await newcomer_sees(server.ws_url, "other", "fine")
    await newcomer_sees(server.ws_url, "compacted", "kept")
    assert server.registry.running
    async with server.http() as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/readyz")).status_code == 200


def test_a_snapshot_of_two_typists_interleaved_loads_in_bounded_memory() -> None:
    """Two people typing into each other's text for a while: their merged state lists one
    client's items before the other's, so most items wait for the other client's while the
    snapshot is checked. Each placement used to keep a copy of all of a client's ranges for its
    undo: an hour of such typing (36,000 keystrokes) took 8 GB when the room was compacted."""
    rng = random.Random(3)
    docs: list[Doc[Text]] = [Doc(), Doc()]
    for _ in range(2_500):
        for author, doc in enumerate(docs):
            text = doc.get("codemirror", type=Text)
            before = doc.get_state()
            text.insert(rng.randint(0, len(text)), "x")
            docs[1 - author].apply_update(doc.get_update(before))
    snapshot = docs[0].get_update()
    tracemalloc.start()
    try:
        check_stored([snapshot], UpdateLimits())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024  # measured: 200 MB with the copies, a few MB without
