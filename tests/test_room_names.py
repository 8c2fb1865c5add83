"""Rooms named as editors name them (`team/app:src/main.py`), over WebSocket, REST and the page."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from collab_server.protocol import CloseCode
from tests.conftest import RunningServer
from tests.yclient import yclient

pytestmark = pytest.mark.anyio

FILE_ROOM = "team/app:src/main.py"


def api(room: str, part: str = "") -> str:
    return f"/api/rooms/{quote(room, safe='')}{part}"


async def test_a_room_named_after_a_file_works_over_websocket_and_rest(
    server: RunningServer,
) -> None:
    async with yclient(server.ws_url, FILE_ROOM) as writer:  # the name as it is, slashes too
        writer.text.insert(0, "print('hi')\n")
        async with server.http() as http:
            text = await http.get(api(FILE_ROOM, "/text"))
            assert (text.status_code, text.text) == (200, "print('hi')\n")
            record = await http.get(api(FILE_ROOM))
            assert record.json()["id"] == FILE_ROOM
            listed = await http.get("/api/rooms")
            assert FILE_ROOM in [room["id"] for room in listed.json()["rooms"]]

            put = await http.put(api(FILE_ROOM, "/text"), content=b"print('bye')\n")
            assert put.status_code == 200
            await writer.wait_until(lambda: str(writer.text) == "print('bye')\n")

            assert (await http.delete(api(FILE_ROOM))).status_code == 204
            await writer.wait_closed()
        assert writer.close_code == CloseCode.ROOM_DELETED


async def test_a_room_whose_name_ends_in_text_is_not_another_rooms_text(
    server: RunningServer,
) -> None:
    async with server.http() as http:
        for room in ("notes", "notes/text"):
            assert (await http.post("/api/rooms", json={"id": room})).status_code == 201
        assert (await http.put(api("notes", "/text"), content=b"the notes")).status_code == 200

        assert (await http.get(api("notes/text"))).json()["id"] == "notes/text"
        assert (await http.get(api("notes/text", "/text"))).text == ""
        assert (await http.get("/api/rooms/notes/text")).text == "the notes"


async def test_upstreams_test_room_name_and_spaces_work(server: RunningServer) -> None:
    async with yclient(server.ws_url, "test-@y/websocket") as client:
        client.text.insert(0, "x")
    async with yclient(server.ws_url, "my%20room") as client:  # a browser encodes the space
        client.text.insert(0, "y")
    async with server.http() as http:
        assert (await http.get(api("test-@y/websocket", "/text"))).text == "x"
        assert (await http.get(api("my room", "/text"))).text == "y"


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("", "empty"),
        ("a%3Fb", "'?'"),
        ("a//b", "segment"),
        ("a/%2E%2E/b", "segment"),
        ("x" * 257, "longer than 256"),
        ("a%0Ab", "U+000A"),
        ("%20lead", "white space"),
    ],
)
async def test_names_a_url_would_change_are_closed_with_4400_and_the_reason(
    server: RunningServer, path: str, reason: str
) -> None:
    async with connect(f"{server.ws_url}/{path}") as websocket:
        with pytest.raises(ConnectionClosed):
            await websocket.recv()
    assert websocket.close_code == CloseCode.BAD_MESSAGE
    assert reason in (websocket.close_reason or "")


async def test_rest_refuses_such_names_with_the_reason(server: RunningServer) -> None:
    async with server.http() as http:
        created = await http.post("/api/rooms", json={"id": "a?b"})
        assert created.status_code == 422
        assert "'?'" in created.text
        missing = await http.get(api("a?b"))
        assert missing.status_code == 404
        assert missing.json()["error"] == "room_not_found"


async def test_the_page_serves_a_slashed_name_as_one_segment(server: RunningServer) -> None:
    async with server.http() as http:
        moved = await http.get(f"/r/{FILE_ROOM}?x=1", headers={"accept": "text/html"})
        assert moved.status_code == 308
        # Relative, from /r/team/app:src/ back to /r/.
        assert moved.headers["location"] == "../../team%2Fapp%3Asrc%2Fmain.py?x=1"
        target = moved.url.join(moved.headers["location"])
        assert target.raw_path == b"/r/team%2Fapp%3Asrc%2Fmain.py?x=1"
        page = await http.get(target, headers={"accept": "text/html"})
        assert page.status_code == 200
        assert "editor.js" in page.text


async def test_an_encoded_page_prefix_is_not_redirected_by_guesswork(server: RunningServer) -> None:
    """`/%72/a/b` is `/r/a/b` decoded; without `/r/` in the raw path there is no segment count
    to go back by, so the page is served where it was asked for."""
    async with server.http() as http:
        page = await http.get("/%72/a/b", headers={"accept": "text/html"})
    assert page.status_code == 200
