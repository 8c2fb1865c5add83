"""A helper process that may die: requests of byte strings in, one JSON line out.

Whatever can crash (pycrdt on hostile documents) runs in such a child so the fuzzer survives
it. A request is a count, then each byte string with its length (little-endian u32s). The child
answers with one line of JSON. If it dies or hangs, `Child.ask` says so and the next request
starts a new one. The child's stderr goes to a file that is emptied before each request, so a
panic's message and source line can be attached to the answer.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any


class ChildDied(Exception):
    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.how = how


class ChildTimedOut(Exception):
    pass


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError
    return data


def serve(handle: Callable[[list[bytes]], dict[str, Any]]) -> None:
    """The child's loop: answer each request with `handle`, until stdin closes."""
    stdin, stdout = sys.stdin.buffer, sys.stdout
    while True:
        try:
            (count,) = struct.unpack("<I", _read_exact(stdin, 4))
            parts = []
            for _ in range(count):
                (size,) = struct.unpack("<I", _read_exact(stdin, 4))
                parts.append(_read_exact(stdin, size))
        except EOFError:
            return
        os.lseek(2, 0, os.SEEK_SET)
        os.ftruncate(2, 0)
        answer = handle(parts)
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()


def stderr_so_far() -> str:
    """In the child: what it wrote to stderr during this request (a panic's source line)."""
    sys.stderr.flush()
    os.lseek(2, 0, os.SEEK_SET)
    return os.read(2, 4000).decode(errors="replace")


class Child:
    def __init__(self, module: str, seconds: float) -> None:
        self._module = module
        self._seconds = seconds
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr = tempfile.NamedTemporaryFile(prefix="fuzz-child-", suffix=".err")

    def _start(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", self._module, "--child"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=open(self._stderr.name, "w+b"),  # the child writes it
                env={**os.environ, "RUST_BACKTRACE": "1"},
            )
        return self._process

    def ask(self, parts: list[bytes]) -> dict[str, Any]:
        process = self._start()
        assert process.stdin is not None and process.stdout is not None
        payload = struct.pack("<I", len(parts)) + b"".join(
            struct.pack("<I", len(part)) + part for part in parts
        )
        try:
            process.stdin.write(payload)
            process.stdin.flush()
        except BrokenPipeError:
            pass
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            ready = selector.select(self._seconds)
        line = process.stdout.readline() if ready else b""
        if line:
            answer: dict[str, Any] = json.loads(line)
            return answer
        if process.poll() is None:
            process.kill()
            process.wait()
            raise ChildTimedOut(f"no answer within {self._seconds} s")
        raise ChildDied(_death(process.returncode, Path(self._stderr.name)))

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            self._process.wait()
        self._stderr.close()


def _death(returncode: int, stderr: Path) -> str:
    if returncode < 0:
        how = f"killed by {signal.Signals(-returncode).name}"
    else:
        how = f"exited with {returncode}"
    tail = stderr.read_bytes()[-3000:].decode(errors="replace").strip()
    return f"{how}\n{tail}" if tail else how
