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

Jedi's cache (parso's pickled trees of the standard library and of the stubs it reads) is kept
across restarts, so that jedi answers in full soon after a start instead of parsing all of it
again. parso writes its pickles in place and does not expect a half-written file, and two
processes sharing one directory made jedi fail with EOFError now and then; so each worker takes
a slot directory of its own under `COLLAB_COMPLETION_CACHE_DIR`, held by an exclusive lock for
its life (the kernel drops it however the worker ends), and a slot its last owner did not leave
cleanly (a kill in the middle of a write) is emptied before use.
"""

from __future__ import annotations

import atexit
import ctypes
import fcntl
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import jedi
import parso.cache

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
CACHE_SLOTS = 64  # workers of every server on this machine that share one cache directory
CLEAN_MARK = "clean"  # in a slot: its last owner left with no write under way
NO_CACHE = "none"  # COLLAB_COMPLETION_CACHE_DIR that keeps nothing across restarts
LEAVE_WAIT_SECONDS = 1.0  # for a write into the cache to end, as the worker leaves
_worker: Worker | None = None
_slot: Path | None = None  # the kept cache slot this worker holds; None: a temporary directory
_cache_writes = threading.Lock()  # held by parso while it writes into the cache


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


def start_worker(server: int, cache_root: str) -> None:
    """The pool's initializer: tie this process to `server` (the server's PID), take a jedi
    cache directory under `cache_root` (`NO_CACHE`: a temporary one), build this process's
    worker and start warming jedi."""
    global _worker
    _use_jedi_cache(cache_root)
    _exit_with(server)
    os.nice(NICENESS)
    _worker = Worker()
    _worker.warm_up()


def _use_jedi_cache(root: str) -> None:
    """Point jedi at a cache directory this worker alone uses: a kept slot under `root`, or,
    without one (none given, none free, not writable), a temporary directory removed at exit."""
    global _slot
    _slot = _claim_slot(Path(root).expanduser()) if root not in ("", NO_CACHE) else None
    if _slot is not None:
        jedi.settings.cache_directory = str(_slot / "jedi")
        _guard_cache_writes()
        atexit.register(_leave_slot)
        return
    directory = tempfile.mkdtemp(prefix="collab-jedi-")
    jedi.settings.cache_directory = directory
    atexit.register(shutil.rmtree, directory, ignore_errors=True)


def _claim_slot(root: Path) -> Path | None:
    for number in range(CACHE_SLOTS):
        slot = root / f"worker-{number}"
        try:
            slot.mkdir(parents=True, exist_ok=True)
            lock = os.open(slot / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as error:
            logger.warning(
                "completion cache %s unusable (%s): a temporary one instead", root, error
            )
            return None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(lock)  # another worker's
            continue
        # The lock stays held (its descriptor open) until this process ends.
        clean = slot / CLEAN_MARK
        if clean.exists():
            clean.unlink()
        else:
            shutil.rmtree(slot / "jedi", ignore_errors=True)
        return slot
    logger.warning("all %d completion cache slots in %s are taken", CACHE_SLOTS, root)
    return None


def _guard_cache_writes() -> None:
    """Make parso's writes into the cache hold `_cache_writes` (it calls these two by name)."""
    for name in ("_save_to_file_system", "_remove_cache_and_update_lock"):
        write = getattr(parso.cache, name)

        def guarded(*args: object, _write: Callable[..., None] = write, **kwargs: object) -> None:
            with _cache_writes:
                _write(*args, **kwargs)

        setattr(parso.cache, name, guarded)


def _leave_slot() -> None:
    """Mark the slot clean once no write is under way, and let none start after (a worker
    that cannot tell leaves it for the next owner to empty)."""
    if _slot is not None and _cache_writes.acquire(timeout=LEAVE_WAIT_SECONDS):
        (_slot / CLEAN_MARK).touch()


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
    if _slot is not None:
        _leave_slot()
    else:
        shutil.rmtree(jedi.settings.cache_directory, ignore_errors=True)
    os._exit(0)


def run_job(job: Job) -> Completions:
    if _worker is None:
        raise RuntimeError("start_worker() has not run in this process")
    return _worker.run(job)


def ping() -> int:
    """A no-op job: submitting one per worker makes the pool start (and warm) them all."""
    return 0
