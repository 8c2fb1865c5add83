"""Waiting on real state that gives no event: a child process, a store, an HTTP answer."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

import anyio

INTERVAL = 0.02


async def poll(check: Callable[[], object | Awaitable[object]], seconds: float = 10) -> None:
    """Call `check` (sync or async) until it returns a true value; TimeoutError after `seconds`."""
    with anyio.fail_after(seconds):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(INTERVAL)
