"""Memory: freed memory given back to the system after rooms leave it, and full garbage
collections on a timer instead of in the middle of a burst of clients.

glibc's malloc keeps what Python and yrs free in its arenas: after 2,000 idle sockets in 200
rooms had left and their rooms unloaded, the process still held the 70 MB they took.
`malloc_trim(0)` returns the free pages. It walks the heap, so it runs in a thread, at most once
every `TRIM_EVERY_SECONDS`, after rooms are unloaded (one trim for a burst of unloads), after a
full collection has emptied CPython's free lists. Python objects reach malloc only under
`PYTHONMALLOC=malloc`, which `collab-server serve` sets (`collab_server.launch`).

Blocks of 128 KiB and more (a big document's text, a completion job) get mappings of their own,
given back when freed: glibc raises that threshold each time such a block is freed, and the
blocks then served from the heap left it fragmented (16 clients flooding completion on a 1.8 MB
file left 18 MB behind; 11 MB with the threshold fixed).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import sys
import time
from types import TracebackType

logger = logging.getLogger(__name__)

TRIM_EVERY_SECONDS = 10.0
# A full collection holds the event loop for as long as it walks the heap (2 million tracked
# objects: 290 ms). One that took longer than this is not repeated after unloads for a while.
COLLECT_BUDGET_SECONDS = 0.05
BIG_HEAP_PAUSE_SECONDS = 300.0
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's default, fixed (set, it no longer moves)
_M_MMAP_THRESHOLD = -3  # from <malloc.h>


class MemoryReleaser:
    def __init__(self) -> None:
        self._trim: ctypes._NamedFuncPointer | None = None
        libc = _glibc()
        if libc is not None:
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
            self._trim = libc.malloc_trim
            self._trim.argtypes = [ctypes.c_size_t]
            self._trim.restype = ctypes.c_int
        self._last = -TRIM_EVERY_SECONDS
        self._scheduled = False
        self._collect_from = 0.0  # unloads before this (monotonic) are not followed by one

    def after_unload(self) -> None:
        """Return free heap pages to the system soon (call on the event loop)."""
        if self._trim is None or self._scheduled:
            return
        self._scheduled = True
        delay = max(0.0, self._last + TRIM_EVERY_SECONDS - time.monotonic())
        asyncio.get_running_loop().call_later(delay, self._start)

    def _start(self) -> None:
        self._scheduled = False
        self._last = now = time.monotonic()
        if now >= self._collect_from:
            # A full collection empties CPython's free lists (floats, tuples, frames...), whose
            # blocks would otherwise pin the heap pages around them.
            started = time.perf_counter()
            gc.collect()
            if time.perf_counter() - started > COLLECT_BUDGET_SECONDS:
                # A heap this big is left to FullCollections' timer: rooms that unload every
                # few seconds must not each hold the loop this long.
                self._collect_from = now + BIG_HEAP_PAUSE_SECONDS
        if self._trim is not None:
            asyncio.get_running_loop().run_in_executor(None, self._trim, 0)


class FullCollections:
    """CPython's full collections (the oldest generation) every `every_seconds`, not on growth.

    CPython collects the oldest generation whenever the long-lived objects have grown by a
    quarter, and the walk holds the event loop: while 2,000 sockets joined, that was five
    collections of 138-391 ms. Here the objects alive after start-up (modules, settings) are
    frozen out of every collection, the automatic full collections are off, and one runs on a
    timer; the young generations collect as before. Process-wide: only the first of several apps
    in one process (tests) changes the collector.
    """

    _in_charge: FullCollections | None = None  # the one that changed the collector

    def __init__(self, every_seconds: float) -> None:
        self._every = every_seconds
        self._thresholds = gc.get_threshold()
        self._timer: asyncio.TimerHandle | None = None

    async def __aenter__(self) -> FullCollections:
        if self._every <= 0 or FullCollections._in_charge is not None:
            return self
        FullCollections._in_charge = self
        gc.collect()
        gc.freeze()
        self._thresholds = gc.get_threshold()
        young, middle, _ = self._thresholds
        gc.set_threshold(young, middle, _NEVER)
        self._schedule()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if FullCollections._in_charge is not self:
            return
        if self._timer is not None:
            self._timer.cancel()
        gc.set_threshold(*self._thresholds)
        gc.unfreeze()
        FullCollections._in_charge = None

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._every, self._collect)

    def _collect(self) -> None:
        started = time.perf_counter()
        found = gc.collect()
        logger.debug(
            "full collection: %d unreachable objects in %.0f ms",
            found,
            (time.perf_counter() - started) * 1000,
        )
        self._schedule()


# The oldest generation's threshold counts collections of the middle one; this many never come.
_NEVER = 2**31 - 1


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim"):  # not glibc (musl has none)
        logger.debug("glibc's malloc_trim is not available")
        return None
    return libc
