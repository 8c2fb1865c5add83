"""Content, versions and authorship survive restarts and crashes of a real server process on
the SQLite default."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import httpx
import pytest

from collab_server.rooms.authorship import FLUSH_SECONDS
from tests.polling import poll
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


async def test_kill_9_keeps_every_saved_version_and_settled_authorship(tmp_path: Path) -> None:
    """A version answered 201 is durable; authorship is written within 2 s of the edit."""
    env = {"COLLAB_STORE_URL": f"sqlite:///{tmp_path}/collab.db"}
    async with server_process(env) as server:
        async with (
            httpx.AsyncClient(base_url=server.http_url) as http,
            yclient(server.ws_url, "history") as ada,
        ):
            await ada.announce("Ada")
            ada.text.insert(0, "first\n")
            await poll(lambda: _text_is(http, "history", "first\n"))
            saved = (await http.post("/api/rooms/history/versions", json={"label": "one"})).json()
            ada.text.insert(6, "second\n")
            await poll(lambda: _text_is(http, "history", "first\nsecond\n"))
            changed = (await http.post("/api/rooms/history/versions", json={"label": "two"})).json()
            await anyio.sleep(AUTHORSHIP_SETTLES)
            server.kill()
    async with server_process(env) as server, httpx.AsyncClient(base_url=server.http_url) as http:
        listed = (await http.get("/api/rooms/history/versions")).json()["versions"]
        assert [v["id"] for v in listed if not v["automatic"]] == [changed["id"], saved["id"]]
        for version, text in ((saved, "first\n"), (changed, "first\nsecond\n")):
            then = await http.get(f"/api/rooms/history/versions/{version['id']}/text")
            assert then.text == text
        blamed = (await http.get("/api/rooms/history/blame")).json()
        assert [(r["from_line"], r["to_line"], r["author"]) for r in blamed["runs"]] == [
            (1, 3, "Ada")
        ]


AUTHORSHIP_SETTLES = FLUSH_SECONDS + 1


async def _text_is(http: httpx.AsyncClient, room: str, text: str) -> bool:
    return (await http.get(f"/api/rooms/{room}/text")).text == text
