"""The server under test as a child process: started, watched, stopped, started again.

Its stderr is read line by line: the last lines are kept (a crash report shows them) and lines
that name a failure are counted by kind, so a long run neither fills a disk nor forgets.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import re
import signal
import sys
import time
from collections import Counter, deque
from pathlib import Path

import httpx

PR_SET_PDEATHSIG = 1
# A connection kept alive across a restart of the server fails on its next request: every
# client that talks to the server opens a connection per request (cheap on loopback).
NO_KEEPALIVE = httpx.Limits(max_keepalive_connections=0)

# What a log line says went wrong, by the first of these patterns it matches.
LOG_KINDS = [
    ("panic", re.compile(r"PanicException|panicked at")),
    ("stack_overflow", re.compile(r"overflowed its stack")),
    ("recursion_error", re.compile(r"RecursionError")),
    ("internal_error", re.compile(r"internal error")),
    ("asgi_exception", re.compile(r"Exception in ASGI application")),
    ("traceback", re.compile(r"^Traceback")),
    ("error", re.compile(r"\bERROR\b|\berror\b")),
    ("warning", re.compile(r"\bWARNING\b")),
]


class ServerStartError(RuntimeError):
    pass


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the fuzzer dies, so no server outlives a run."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: the fuzzer's own clean-up has to do


class ServerProcess:
    def __init__(
        self, port: int, env: dict[str, str], log_path: Path, source: Path | None = None
    ) -> None:
        self.port = port
        self.env = env
        self.source = source  # a checkout to run the server from (default: this one)
        self.log_path = log_path  # the first MiBs of every incarnation's stderr
        self.process: asyncio.subprocess.Process | None = None
        self.incarnation = 0
        self.log_tail: deque[str] = deque(maxlen=300)
        self.log_kinds: Counter[str] = Counter()
        self.log_samples: dict[str, str] = {}  # the first line of each kind
        self._log_budget = 20 * 1024 * 1024
        self._reader: asyncio.Task[None] | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, seconds: float = 30.0) -> None:
        self.incarnation += 1
        env = {**os.environ, **self.env}
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source)  # its packages before the installed ones
        self.log_tail.append(f"--- start #{self.incarnation} at {time.strftime('%H:%M:%S')}")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "collab_server",
            "serve",
            "--port",
            str(self.port),
            env=env,
            cwd=self.source,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        self._reader = asyncio.create_task(self._read_log(self.process))
        await self._wait_healthy(seconds)

    async def _wait_healthy(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        async with httpx.AsyncClient(base_url=self.http_url, timeout=2.0) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.returncode is not None:
                    raise ServerStartError(f"server exited with {self.process.returncode}")
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)  # a child process gives no other sign of listening
        raise ServerStartError(f"server not healthy within {seconds} s")

    async def _read_log(self, process: asyncio.subprocess.Process) -> None:
        assert process.stderr is not None
        with self.log_path.open("ab") as log:
            while line := await process.stderr.readline():
                if self._log_budget > 0:
                    log.write(line)
                    self._log_budget -= len(line)
                text = line.decode(errors="replace").rstrip()
                self.log_tail.append(text)
                for kind, pattern in LOG_KINDS:
                    if pattern.search(text):
                        self.log_kinds[kind] += 1
                        self.log_samples.setdefault(kind, text[:300])
                        break

    async def wait(self) -> int:
        assert self.process is not None
        code = await self.process.wait()
        if self._reader is not None:
            await self._reader  # the last lines before death matter most
        return code

    async def stop(self, seconds: float = 30.0) -> tuple[int, bool]:
        """SIGTERM and wait; SIGKILL after `seconds`. Returns (exit code, whether it was
        killed because it did not stop in time)."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(seconds):
                return await self.wait(), False
        except TimeoutError:
            self.process.kill()
            return await self.wait(), True

    def abort(self) -> None:
        """SIGABRT: with PYTHONFAULTHANDLER set, Python prints every thread's stack first."""
        if self.running and self.process is not None:
            self.process.send_signal(signal.SIGABRT)

    def cpu_seconds(self) -> float | None:
        """User + system CPU time of the running process."""
        if not self.running or self.pid is None:
            return None
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # Fields 14 and 15 of stat (utime, stime); index 11 and 12 after the command name.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def memory_kib(self) -> tuple[int, int] | None:
        """(VmRSS, VmHWM) of the running process, in KiB."""
        if not self.running or self.pid is None:
            return None
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        fields = dict(
            line.split(":", 1)
            for line in status.splitlines()
            if line.startswith(("VmRSS", "VmHWM"))
        )
        try:
            return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
        except (KeyError, ValueError):
            return None


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with {code}"
