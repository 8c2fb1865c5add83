"""Giving freed memory back to the system after rooms leave it.

glibc's malloc keeps what Python and yrs free in its arenas: after 2,000 idle sockets in 200
rooms had left and their rooms unloaded, the process still held the 70 MB they took.
`malloc_trim(0)` returns the free pages. It walks the heap, so it runs in a thread, at most once
every `TRIM_EVERY_SECONDS`, after rooms are unloaded (one trim for a burst of unloads).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import sys
import time

logger = logging.getLogger(__name__)

TRIM_EVERY_SECONDS = 10.0


class MemoryReleaser:
    def __init__(self) -> None:
        self._trim = _malloc_trim()
        self._last = -TRIM_EVERY_SECONDS
        self._scheduled = False

    def after_unload(self) -> None:
        """Return free heap pages to the system soon (call on the event loop)."""
        if self._trim is None or self._scheduled:
            return
        self._scheduled = True
        delay = max(0.0, self._last + TRIM_EVERY_SECONDS - time.monotonic())
        asyncio.get_running_loop().call_later(delay, self._start)

    def _start(self) -> None:
        self._scheduled = False
        self._last = time.monotonic()
        if self._trim is not None:
            asyncio.get_running_loop().run_in_executor(None, self._trim, 0)


def _malloc_trim() -> ctypes._NamedFuncPointer | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has none)
        logger.debug("malloc_trim is not available")
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
