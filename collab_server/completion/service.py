"""The completion service: a process pool behind a bounded admission, answers by a deadline.

Owned by the app's lifespan (`async with CompletionService(settings) as completion`). Requests run
in worker processes (`worker.py`), never on the event loop. At most `completion_queue` requests
are admitted at a time (`admitted()`, taken before the caller reads the document); a slot is
held until both the caller is done and the worker has finished the job, so work abandoned at its
deadline still counts against the bound. Beyond it a request is refused at once
(`CompletionBusy`). Each request has a deadline: whatever the providers have not delivered by
then is left out, and the answer says it is partial.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import TracebackType

from collab_server.completion import worker
from collab_server.completion.generic import word_start
from collab_server.completion.job import MAX_ITEMS, Completions, Item, Job
from collab_server.completion.llm import LlmClient, LlmError
from collab_server.settings import Settings

logger = logging.getLogger(__name__)

FALLBACK_RESERVE = 0.25  # share of the deadline kept for the generic fallback after jedi
FALLBACK_RESERVE_MAX = 0.15  # seconds


class CompletionError(Exception):
    """Completion cannot be served now."""


class CompletionBusy(CompletionError):
    """Too many completion requests are in flight."""


class CompletionUnavailable(CompletionError):
    """Completion is turned off, or its worker pool is restarting."""


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    text: str
    index: int  # the cursor, in code points
    language: str
    key: str  # identifies the document (room and text name) across requests


class Admission:
    """One admitted request's slot: given back once the request and its worker's job are done."""

    def __init__(self, slots: threading.Semaphore) -> None:
        self._slots = slots
        self._holders = 1  # the request; its job, once submitted, is another
        self._lock = threading.Lock()

    def _hold(self) -> None:
        with self._lock:
            if self._holders == 0:
                raise RuntimeError("this admission was given back already")
            self._holders += 1

    def _release(self) -> None:  # called from the event loop and from the pool's thread
        with self._lock:
            self._holders -= 1
            if self._holders == 0:
                self._slots.release()


class CompletionService:
    def __init__(self, settings: Settings) -> None:
        self._workers = settings.completion_workers
        self._cache_dir = settings.completion_cache_dir
        self._deadline = settings.completion_deadline_ms / 1000
        self._slots = threading.Semaphore(settings.completion_queue)
        self._pool: ProcessPoolExecutor | None = None
        self._llm: LlmClient | None = None
        if settings.completion_llm_url:
            key = settings.completion_llm_key
            self._llm = LlmClient(
                settings.completion_llm_url,
                settings.completion_llm_model,
                key.get_secret_value() if key is not None else None,
                settings.completion_llm_timeout_ms / 1000,
            )

    def start_workers(self) -> None:
        """Spawn the workers now (entering does it too): each warms jedi up for about a second
        and a half, which `collab-server serve` lets run while the rest of the server starts.
        Call it on the thread that will run the event loop (see `_start_pool`)."""
        if self._workers > 0 and self._pool is None:
            self._pool = self._start_pool()

    async def __aenter__(self) -> CompletionService:
        self.start_workers()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        pool, self._pool = self._pool, None
        try:
            if pool is not None:
                # Running jobs end by their deadline; queued ones are dropped.
                await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
        finally:
            if self._llm is not None:
                await self._llm.aclose()

    def _start_pool(self) -> ProcessPoolExecutor:
        # Spawned, not forked: the server process has threads, and workers need none of its state.
        # Each worker gets this PID so that it can leave with this process (see worker.py).
        pool = ProcessPoolExecutor(
            self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker.start_worker,
            initargs=(os.getpid(), self._cache_dir),
        )
        # Start every worker now, so each warms jedi up. A worker's parent-death signal follows
        # the thread that spawned it: this one, the event loop's, which lives as long as we do.
        for _ in range(self._workers):
            pool.submit(worker.ping)
        logger.info("completion pool started (%d workers)", self._workers)
        return pool

    @contextmanager
    def admitted(self) -> Iterator[Admission]:
        """A slot for one request, taken at once, before the caller does any document-sized
        work; given back on every way out (and once the worker's job, if any, is done). Raise
        `CompletionUnavailable` when completion is off, `CompletionBusy` when the slots are."""
        if self._pool is None:
            raise CompletionUnavailable("completion is turned off (COLLAB_COMPLETION_WORKERS=0)")
        if not self._slots.acquire(blocking=False):
            raise CompletionBusy("too many completion requests in flight")
        admission = Admission(self._slots)
        try:
            yield admission
        finally:
            admission._release()

    async def complete(
        self, admission: Admission, request: CompletionRequest, deadline: float | None = None
    ) -> Completions:
        """Items for the cursor of `request` by `deadline` (`time.monotonic()`; by default the
        configured time from now), within `admission`; raise `CompletionError`."""
        if deadline is None:
            deadline = time.monotonic() + self._deadline
        pool = self._pool
        if pool is None:
            raise CompletionUnavailable("completion is shutting down")
        reserve = min(FALLBACK_RESERVE * (deadline - time.monotonic()), FALLBACK_RESERVE_MAX)
        job = Job(
            request.text,
            request.index,
            request.language,
            request.key,
            deadline=deadline,
            jedi_deadline=deadline - reserve,
        )
        admission._hold()
        try:
            future = pool.submit(worker.run_job, job)
        except (BrokenProcessPool, RuntimeError) as error:
            admission._release()
            self._restart(pool, error)
            raise CompletionUnavailable("the completion pool is restarting") from error
        future.add_done_callback(lambda _: admission._release())
        return await self._answer(request, future, pool, deadline)

    async def _answer(
        self,
        request: CompletionRequest,
        future: Future[Completions],
        pool: ProcessPoolExecutor,
        deadline: float,
    ) -> Completions:
        typed_from = word_start(request.text, request.index, request.language)
        suggestion: asyncio.Task[Item | None] | None = None
        if self._llm is not None:
            remaining = deadline - time.monotonic()
            suggestion = asyncio.create_task(
                self._llm.suggest(
                    request.text, request.index, typed_from, request.language, remaining
                )
            )
        try:
            try:
                async with asyncio.timeout(deadline - time.monotonic()):
                    local = await asyncio.wrap_future(future)
            except TimeoutError:
                future.cancel()  # if it has not started; a running job ends by its own deadline
                local = Completions(typed_from, request.index).degraded("no answer in time")
            except BrokenProcessPool as error:
                self._restart(pool, error)
                raise CompletionUnavailable("the completion pool is restarting") from error
            if suggestion is None:
                return local
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    item = await suggestion
            except (TimeoutError, LlmError) as error:
                # The AI item is an extra: without it the answer is not partial.
                logger.warning("%s: AI completion failed: %s", request.key, error)
                return local
            return _with_suggestion(local, item, request.text, typed_from)
        finally:
            if suggestion is not None:
                suggestion.cancel()

    def _restart(self, broken: ProcessPoolExecutor, error: BaseException) -> None:
        """Replace a pool whose worker died (once, however many requests noticed)."""
        if self._pool is not broken:
            return
        logger.error("completion pool broken (%s); starting a new one", error)
        broken.shutdown(wait=False, cancel_futures=True)
        self._pool = self._start_pool()


def _with_suggestion(
    local: Completions, item: Item | None, text: str, typed_from: int
) -> Completions:
    """`local` with `item` first, its text fitted from [typed_from, cursor) to `local`'s range."""
    if item is None:
        return local
    insert = item.insert_text
    if local.start < typed_from:
        insert = text[local.start : typed_from] + insert
    elif local.start > typed_from:
        insert = insert[local.start - typed_from :]
    item = replace(item, insert_text=insert)
    others = tuple(other for other in local.items if other.insert_text != insert)
    return replace(local, items=(item, *others[: MAX_ITEMS - 1]))
