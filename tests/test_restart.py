"""Content survives restarts and crashes of a real server process on the SQLite default."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import httpx
import pytest

from tests.server_process import server_process
from tests.yclient import yclient

pytestmark = pytest.mark.anyio


async def test_content_survives_a_restart(tmp_path: Path) -> None:
    env = {"COLLAB_STORE_URL": f"sqlite:///{tmp_path}/collab.db"}
    async with server_process(env) as server, yclient(server.ws_url, "kept") as client:
        client.text.insert(0, "déjà vu 😀")
        client.meta["language"] = "go"
        async with yclient(server.ws_url, "kept") as witness:
            await witness.wait_until(lambda: witness.meta.get("language") == "go")
    async with server_process(env, port=server.port) as server:
        async with yclient(server.ws_url, "kept") as client:
            assert str(client.text) == "déjà vu 😀"
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            assert (await http.get("/api/rooms/kept")).json()["language"] == "go"


async def test_kill_9_loses_nothing_another_client_saw(tmp_path: Path) -> None:
    """Whatever a witness received was durable before it was relayed."""
    env = {"COLLAB_STORE_URL": f"sqlite:///{tmp_path}/collab.db"}
    seen = ""
    async with server_process(env) as server:
        async with (
            yclient(server.ws_url, "crash") as typist,
            yclient(server.ws_url, "crash") as witness,
        ):
            for number in range(300):
                typist.text.insert(len(str(typist.text)), f"{number};")
                if number % 25 == 0:
                    await anyio.lowlevel.checkpoint()  # let frames flow while typing continues
                if number == 150:
                    await witness.wait_until(lambda: "150;" in str(witness.text))
                    server.kill()
                    break
            await witness.wait_closed()
            seen = str(witness.text)
    assert "150;" in seen
    async with server_process(env) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        stored = (await http.get("/api/rooms/crash/text")).text
    assert stored.startswith(seen), (len(stored), len(seen))
