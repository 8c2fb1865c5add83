"""Completion workers end with the server process, however it ends, and keep jedi's cache for
the next start.

A server killed with SIGKILL cannot stop its pool: each worker (about 100 MB) must leave on its
own, including one that was still starting when the server died, and the pool's resource tracker
must follow. The server is a real child process (`python -m collab_server serve`); the processes
it started are found in /proc, listed while it is stopped so that it cannot start another.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from collab_server.completion import worker
from tests.polling import poll
from tests.server_process import free_port, serve_command, server_process

pytestmark = pytest.mark.anyio

ENV = {"COLLAB_STORE_URL": "memory://", "COLLAB_COMPLETION_WORKERS": "2"}
JS = "const counter = 1;\nco"
GONE_WITHIN = 30  # seconds: a worker may still be importing jedi on a loaded machine


@dataclass(frozen=True)
class Process:
    pid: int
    started: int  # clock ticks after boot: tells this process from a later one with its PID
    command: str

    @property
    def is_worker(self) -> bool:
        return "spawn_main" in self.command

    @property
    def is_tracker(self) -> bool:
        return "resource_tracker" in self.command


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(pid: int) -> list[Process]:
    found: list[Process] = []
    parents = {pid}
    while parents:
        children = []
        for entry in Path("/proc").iterdir():
            fields = _stat(int(entry.name)) if entry.name.isdigit() else None
            if fields is not None and int(fields[1]) in parents:
                child = int(entry.name)
                children.append(Process(child, int(fields[19]), _command(child)))
        found += children
        parents = {child.pid for child in children}
    return found


def alive(process: Process) -> bool:
    fields = _stat(process.pid)
    # A zombie has ended: PID 1 may not reap orphans at once (or at all in some sandboxes).
    return fields is not None and fields[0] not in "ZX" and int(fields[19]) == process.started


def stop_and_list(pid: int) -> list[Process]:
    os.kill(pid, signal.SIGSTOP)
    return descendants(pid)


async def all_gone(processes: list[Process]) -> None:
    try:
        await poll(lambda: not any(alive(process) for process in processes), GONE_WITHIN)
    finally:
        for process in processes:  # a failed run must not leave 100 MB processes behind
            if alive(process):
                os.kill(process.pid, signal.SIGKILL)


async def test_workers_and_their_tracker_end_with_a_killed_server() -> None:
    async with server_process(ENV) as server:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            created = await http.post("/api/rooms", json={"id": "js", "language": "javascript"})
            assert created.is_success
            assert (await http.put("/api/rooms/js/text", content=JS.encode())).is_success

            async def a_worker_answers() -> bool:
                response = await http.post("/api/rooms/js/complete", json={"offset": len(JS)})
                return bool(response.json()["provider"] != "none")

            await poll(a_worker_answers, 60)
        family = stop_and_list(server.process.pid)
        assert sum(process.is_worker for process in family) == 2
        assert any(process.is_tracker for process in family)
        server.kill()
        await server.process.wait()
        await all_gone(family)


async def test_workers_end_with_a_server_killed_while_starting_them() -> None:
    process = await asyncio.create_subprocess_exec(
        *serve_command(free_port()), env={**os.environ, "COLLAB_LOG_LEVEL": "warning", **ENV}
    )
    try:
        # The first worker exists but has not started up: it will find its parent gone.
        await poll(lambda: any(child.is_worker for child in descendants(process.pid)), 30)
        family = stop_and_list(process.pid)
        assert any(child.is_tracker for child in family)
        process.kill()
        await process.wait()
        await all_gone(family)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# -- jedi's cache, kept across restarts ------------------------------------------------------------


def test_each_worker_takes_a_slot_of_its_own_and_a_dirty_one_is_emptied(tmp_path: Path) -> None:
    kept, dirty = tmp_path / "worker-0" / "jedi", tmp_path / "worker-1" / "jedi"
    for cache in (kept, dirty):
        cache.mkdir(parents=True)
        (cache / "tree.pkl").write_bytes(b"parso's pickle")
    (tmp_path / "worker-0" / worker.CLEAN_MARK).touch()  # left cleanly; worker-1 was killed
    first, second = worker._claim_slot(tmp_path), worker._claim_slot(tmp_path)
    third = worker._claim_slot(tmp_path)
    assert [first, second, third] == [tmp_path / f"worker-{n}" for n in range(3)]
    assert (kept / "tree.pkl").exists() and not dirty.exists()
    assert not (tmp_path / "worker-0" / worker.CLEAN_MARK).exists()  # in use: dirty until left


async def test_a_stopped_server_leaves_its_workers_caches_for_the_next_start(
    tmp_path: Path,
) -> None:
    env = {**ENV, "COLLAB_COMPLETION_CACHE_DIR": str(tmp_path)}
    source = "import os\nos.pa"
    async with server_process(env) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        await http.post("/api/rooms", json={"id": "py", "language": "python"})
        await http.put("/api/rooms/py/text", content=source.encode())

        async def jedi_answers() -> bool:
            answer = await http.post("/api/rooms/py/complete", json={"offset": len(source)})
            found = answer.json()
            return bool(found.get("provider") == "jedi" and not found["partial"])

        await poll(jedi_answers, GONE_WITHIN)
    _left_clean_with_trees(tmp_path)


def _left_clean_with_trees(root: Path) -> None:
    slots = sorted(root.iterdir())
    assert [slot.name for slot in slots] == ["worker-0", "worker-1"]
    for slot in slots:
        assert (slot / worker.CLEAN_MARK).exists()
        assert any((slot / "jedi").rglob("*.pkl")), f"{slot} kept no parsed trees"
