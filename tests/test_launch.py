"""`collab-server serve` runs under the system allocator, which gives freed memory back."""

from __future__ import annotations

from pathlib import Path

import pytest

from collab_server.launch import _should_restart_with_system_allocator
from tests.server_process import server_process


def _environment_of(pid: int) -> dict[str, str]:
    """The environment the process's current program was started with."""
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


@pytest.mark.anyio
async def test_serve_starts_again_in_place_with_the_system_allocator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    async with server_process({"COLLAB_STORE_URL": "memory://"}) as server:
        # The PID the server was spawned with serves, now running with the variable set.
        assert _environment_of(server.process.pid)["PYTHONMALLOC"] == "malloc"


@pytest.mark.anyio
async def test_the_completion_workers_keep_pythons_own_allocator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the server needs the system allocator; jedi's warm-up is faster on pymalloc."""
    monkeypatch.delenv("PYTHONMALLOC", raising=False)
    env = {"COLLAB_STORE_URL": "memory://", "COLLAB_COMPLETION_WORKERS": "2"}
    async with server_process(env) as server:
        workers = [pid for pid in _children_of(server.process.pid) if _is_pool_worker(pid)]
        assert len(workers) == 2
        for pid in workers:
            assert "PYTHONMALLOC" not in _environment_of(pid)


def _children_of(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task").iterdir()
    return [int(child) for task in tasks for child in (task / "children").read_text().split()]


def _is_pool_worker(pid: int) -> bool:
    return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()


def test_only_serve_without_a_chosen_allocator_starts_again() -> None:
    assert _should_restart_with_system_allocator(["serve"], {})
    assert not _should_restart_with_system_allocator(["serve"], {"PYTHONMALLOC": "pymalloc"})
    assert not _should_restart_with_system_allocator(["token"], {})
    assert not _should_restart_with_system_allocator([], {})
