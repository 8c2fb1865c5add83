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


def test_only_serve_without_a_chosen_allocator_starts_again() -> None:
    assert _should_restart_with_system_allocator(["serve"], {})
    assert not _should_restart_with_system_allocator(["serve"], {"PYTHONMALLOC": "pymalloc"})
    assert not _should_restart_with_system_allocator(["token"], {})
    assert not _should_restart_with_system_allocator([], {})
