"""What runs in each completion worker process: warm-up, jedi within a budget, generic fallback.

`ProcessPoolExecutor` calls plain module functions, so each worker process keeps its one `Worker`
in a module global, set by `start_worker` (the pool's initializer); nothing is built on import.

Jedi cannot be interrupted safely (parso mutates cached trees and writes its pickle cache in
place), so it runs on a thread of the worker while the worker's main thread waits for it until
the job's jedi deadline. If jedi is late, the worker answers with generic results and lets jedi
finish in the background; the next Python job waits for that run (jedi is not thread-safe) within
its own budget, or falls back too. Every job thus returns by its deadline, plus the generic
provider's bounded cost.

A worker leaves when the server process does, however it ends: a server killed with SIGKILL
cannot stop its pool, and a worker left behind keeps ~100 MB and the pool's resource tracker
(which exits once the last process holding its pipe has).
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from types import FrameType

import jedi

from collab_server.completion.generic import complete_generic, word_start
from collab_server.completion.job import Completions, Job
from collab_server.completion.python import JediCompleter

logger = logging.getLogger(__name__)

WARM_UP = (  # first completions that load what most requests need: builtins, os, typing
    "import os\nos.pa",
    "import json, sys, collections, typing\njson.",
    "class A:\n    def method(self):\n        self.value = 1\nA().",
    "pri",
)
NICENESS = 10  # workers yield the CPU to the server process, which relays keystrokes
PARENT_CHECK_SECONDS = 1.0  # where there is no parent-death signal (not Linux)
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_worker: Worker | None = None


class _Run:
    """One jedi call on its own daemon thread (a worker exits without waiting for it)."""

    def __init__(self, name: str, call: Callable[[], Completions | None]) -> None:
        self.result: Completions | None = None
        self.failed = False
        self.done = threading.Event()
        self._call = call
        threading.Thread(target=self._run, name=name, daemon=True).start()

    def _run(self) -> None:
        try:
            self.result = self._call()
        except Exception:
            logger.exception("jedi failed")
            self.failed = True
        finally:
            self.done.set()

    def wait_until(self, deadline: float) -> bool:
        return self.done.wait(max(0.0, deadline - time.monotonic()))


class Worker:
    def __init__(self) -> None:
        self._jedi = JediCompleter()
        self._running: _Run | None = None  # a jedi call that may still be going on

    def warm_up(self) -> None:
        """Load jedi's caches on the jedi thread; jobs are served (generic) meanwhile."""
        self._running = _Run("jedi warm-up", self._warm_up)

    def _warm_up(self) -> None:
        for source in WARM_UP:
            self._jedi.complete(source, len(source), "warm-up")

    def run(self, job: Job) -> Completions:
        if time.monotonic() >= job.deadline:
            start = word_start(job.text, job.index, job.language)
            return Completions(start, job.index).degraded("expired in the queue")
        if job.language == "python":
            answer = self._python(job)
            if answer is not None:
                return answer
            return complete_generic(job.text, job.index, job.language).degraded(
                "jedi was late or failed"
            )
        return complete_generic(job.text, job.index, job.language)

    def _python(self, job: Job) -> Completions | None:
        running = self._running
        if running is not None and not running.wait_until(job.jedi_deadline):
            return None  # the previous call still holds jedi
        run = _Run("jedi", lambda: self._jedi.complete(job.text, job.index, job.key))
        self._running = run
        if not run.wait_until(job.jedi_deadline):
            return None
        self._running = None
        return run.result


def start_worker(server: int) -> None:
    """The pool's initializer: tie this process to `server` (the server's PID), build this
    process's worker and start warming jedi."""
    global _worker
    _private_jedi_cache()
    _exit_with(server)
    os.nice(NICENESS)
    _worker = Worker()
    _worker.warm_up()


def _private_jedi_cache() -> None:
    """Give this worker a cache directory of its own, removed when it exits.

    parso writes its pickle cache in place and does not expect a half-written file: two workers
    (or two servers) sharing ~/.cache/jedi made jedi fail with EOFError now and then.
    """
    directory = tempfile.mkdtemp(prefix="collab-jedi-")
    jedi.settings.cache_directory = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


def _exit_with(server: int) -> None:
    """Leave when `server` ends: on Linux the kernel signals us (SIGTERM) when it does."""
    signal.signal(signal.SIGTERM, _leave_on_signal)  # also how a broken pool is torn down
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    else:
        threading.Thread(target=_watch, args=(server,), name="server-watch", daemon=True).start()
    # The server may have died before the signal was set (this process is spawned and imports
    # jedi first): we were then handed to PID 1 or a subreaper, which sends no signal.
    if os.getppid() != server:
        _leave()


def _watch(server: int) -> None:
    while os.getppid() == server:
        time.sleep(PARENT_CHECK_SECONDS)
    _leave()


def _leave_on_signal(signum: int, frame: FrameType | None) -> None:
    _leave()


def _leave() -> None:
    shutil.rmtree(jedi.settings.cache_directory, ignore_errors=True)
    os._exit(0)


def run_job(job: Job) -> Completions:
    if _worker is None:
        raise RuntimeError("start_worker() has not run in this process")
    return _worker.run(job)


def ping() -> int:
    """A no-op job: submitting one per worker makes the pool start (and warm) them all."""
    return 0
