"""Background work of the rooms (compactions, unloads, catch-ups): one task group, every job
guarded, all of it awaited within a bound when the rooms close.

A job that fails is logged and goes no further: it must not cancel its siblings in the task
group, nor the application's lifespan above it. A yrs panic is a `BaseException`, caught too.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

from collab_server.rooms.document import CrdtFailure, is_panic
from collab_server.rooms.snapshot import LogUnreplayable
from persistence import StoreError

logger = logging.getLogger(__name__)

SHUTDOWN_FLUSH_SECONDS = 10.0

Job = Coroutine[Any, Any, None]


class Jobs:
    def __init__(self) -> None:
        self._tasks: asyncio.TaskGroup | None = None

    @property
    def running(self) -> bool:
        return self._tasks is not None

    async def __aenter__(self) -> Jobs:
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Let running (and just started) jobs finish, within a bound; no new ones start."""
        tasks, self._tasks = self._tasks, None
        if tasks is None:
            return
        try:
            async with asyncio.timeout(SHUTDOWN_FLUSH_SECONDS):
                await tasks.__aexit__(None, None, None)
        except TimeoutError:
            logger.warning(
                "background work still running after %.0f s; cancelled", SHUTDOWN_FLUSH_SECONDS
            )

    def start(self, work: Job, what: str) -> None:
        if self._tasks is None:
            work.close()
            raise RuntimeError("the rooms' background work has stopped")
        self._tasks.create_task(guarded(work, what))


async def guarded(work: Job, what: str) -> None:
    """Run `work`, logging how it failed instead of raising."""
    try:
        await work
    except StoreError as error:
        logger.warning("%s failed: %s", what, error)
    except (CrdtFailure, LogUnreplayable) as error:
        logger.error("%s failed: %s", what, error)
    except Exception:
        logger.exception("%s failed", what)
    except BaseException as error:
        if not is_panic(error):
            raise
        logger.error("%s failed: the CRDT core panicked: %s", what, error)
