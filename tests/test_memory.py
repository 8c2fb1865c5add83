"""Full garbage collections on a timer, not in the middle of a burst of clients; memory given
back after rooms unload."""

from __future__ import annotations

import gc
import subprocess
import sys
import weakref

import pytest

from collab_server.rooms import memory
from collab_server.rooms.memory import FullCollections, MemoryReleaser
from collab_server.settings import Settings
from tests.conftest import run_server
from tests.polling import poll
from tests.yclient import yclient

pytestmark = pytest.mark.anyio


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def _old_cycle() -> weakref.ref[_Cycle]:
    """Cyclic garbage in the oldest generation, which only a full collection frees."""
    cycle = _Cycle()
    gc.collect(1)  # survivors of the middle generation move to the oldest
    return weakref.ref(cycle)


async def test_the_server_runs_full_collections_on_its_timer_only() -> None:
    before = gc.get_threshold()
    settings = Settings(store_url="memory://", completion_workers=0, full_gc_seconds=0.3)
    async with run_server(settings) as server, server.http() as http:
        assert (await http.get("/healthz")).status_code == 200  # started
        young, middle, oldest = gc.get_threshold()
        assert (young, middle) == before[:2] and oldest > 10**9  # never on growth
        assert gc.get_freeze_count() > 0  # start-up's objects are left out of every collection
        garbage = _old_cycle()
        await poll(lambda: garbage() is None, seconds=5)  # the timer's collection freed it
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_without_the_timer_the_collector_is_left_as_python_sets_it() -> None:
    before = gc.get_threshold()
    settings = Settings(store_url="memory://", completion_workers=0, full_gc_seconds=0)
    async with run_server(settings) as server, server.http() as http:
        assert (await http.get("/healthz")).status_code == 200
        assert gc.get_threshold() == before
        assert gc.get_freeze_count() == 0


async def test_only_the_first_of_two_in_one_process_changes_the_collector() -> None:
    before = gc.get_threshold()
    async with FullCollections(60):
        changed = gc.get_threshold()
        assert changed != before
        async with FullCollections(60):
            assert gc.get_threshold() == changed
        assert gc.get_threshold() == changed  # the second's exit restored nothing
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before


async def test_releasing_memory_after_an_unload_runs_a_full_collection() -> None:
    # The full collection empties CPython's free lists before malloc_trim gives pages back.
    garbage = _old_cycle()
    MemoryReleaser().after_unload()
    await poll(lambda: garbage() is None, seconds=5)


async def test_a_collection_over_its_budget_is_not_repeated_after_the_next_unload(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "COLLECT_BUDGET_SECONDS", 0.0)  # every heap is "big"
    monkeypatch.setattr(memory, "TRIM_EVERY_SECONDS", 0.0)
    full: list[int] = []
    collect = gc.collect
    # Counted where the releaser calls it: the interpreter's own collections do not count.
    monkeypatch.setattr(gc, "collect", lambda: full.append(collect()))
    releaser = MemoryReleaser()
    releaser.after_unload()
    await poll(lambda: len(full) == 1, seconds=5)
    releaser.after_unload()
    await poll(lambda: not releaser._scheduled, seconds=5)  # this release ran, no collection
    assert len(full) == 1


async def test_a_websocket_and_its_room_are_freed_without_the_collector() -> None:
    """What 2,000 sockets and 200 rooms left was cyclic garbage (each WebSocket's HTTP half with
    its parser; each room with its admission's callback): only a full collection freed it, and
    with it pinned, the memory did not go back to the system."""
    settings = Settings(store_url="memory://", completion_workers=0, room_idle_seconds=0.1)
    async with run_server(settings) as server:
        async with yclient(server.ws_url, "freed") as client:
            client.text.insert(0, "hello")
            await client.wait_until(lambda: server.registry.loaded("freed") is not None)
        await poll(lambda: server.registry.loaded("freed") is None)
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            kinds = {type(garbage).__name__ for garbage in gc.garbage}
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert not kinds & {"Room", "Admission", "HeaderDeadlineProtocol", "HttpRequestParser"}


# Run in a new interpreter: in this one, free heap space left by earlier tests may serve the
# block whatever the threshold (glibc maps a block only when its heap has no room for it).
_LARGE_BLOCKS = """
import ctypes
from collab_server.rooms.memory import MemoryReleaser

FIELDS = "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in FIELDS.split()]

mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = MallInfo2
MemoryReleaser()
size = 4 * 1024 * 1024
first = ctypes.create_string_buffer(size)
del first  # glibc would now serve blocks up to this size from its heap, which stays behind
before = mallinfo2().hblkhd
second = ctypes.create_string_buffer(size)
print(mallinfo2().hblkhd - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_large_blocks_stay_mapped_on_their_own_after_one_is_freed() -> None:
    mapped = subprocess.run(
        [sys.executable, "-c", _LARGE_BLOCKS], capture_output=True, text=True, check=True
    ).stdout
    assert int(mapped) >= 4 * 1024 * 1024  # the second block got a mapping of its own
