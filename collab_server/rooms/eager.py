"""A coroutine run at once, up to its first suspension, as Python 3.12's eager tasks run one.

A room stores, applies and relays each batch in a task of its own, so that what is stored is
applied even if the connection that sent it is cancelled meanwhile. When the store answers
without suspending (the memory store; PostgreSQL buffering through an outage), that task, its
scheduling and the shield around it cost more than the work: a quarter of the in-process relay
path (`bench/hotpath.py`). Started here, a batch that never suspends needs no task at all; one
that does is carried on by a task from where it suspended, as if it had started in one. (On
SQLite, where every batch waits for its commit, eager starts cost about 4 % more CPU per
delivery in ten alternating relay runs: a room starts its batches eagerly until one has to wait.)

Until its first suspension the coroutine runs in its caller's task: what runs there must not
rely on `asyncio.current_task()` (an `asyncio.timeout` would cancel the caller).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator


def start_eagerly(work: Coroutine[object, None, None]) -> asyncio.Future[None] | None:
    """Run `work` now, up to its first suspension. None if it finished without one (what it
    raised is raised here); else a task that carries it on."""
    try:
        suspended_on = work.send(None)
    except StopIteration:
        return None
    return asyncio.ensure_future(_Resumed(work, suspended_on))


class _Resumed:
    """The rest of a coroutine started by hand. Awaited (by a task), it yields what the
    coroutine suspended on and passes back in whatever the task sends or throws (a
    cancellation), as `yield from` would have."""

    def __init__(self, work: Coroutine[object, None, None], suspended_on: object) -> None:
        self._work = work
        self._suspended_on = suspended_on

    def __await__(self) -> Generator[object, None, None]:
        work, suspended_on = self._work, self._suspended_on
        while True:
            thrown: BaseException | None = None
            try:
                yield suspended_on
            except GeneratorExit:
                work.close()
                raise
            except BaseException as error:
                thrown = error
            try:
                suspended_on = work.send(None) if thrown is None else work.throw(thrown)
            except StopIteration:
                return
