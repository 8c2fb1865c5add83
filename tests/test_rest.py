"""The REST API: rooms, their text, health; every error a JSON body with a 4xx status."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import anyio
import httpx
import pytest
from pycrdt import Doc, Text
from starlette.requests import Request
from starlette.types import Message

from collab_server.rooms.client_state import decode_state_vector
from collab_server.settings import Settings
from collab_server.transport.errors import ApiError
from collab_server.transport.requests import JSON_BODY_BYTES, json_body
from tests.conftest import RunningServer, run_server
from tests.helpers import text_is
from tests.polling import poll
from tests.yclient import yclient

pytestmark = pytest.mark.anyio


async def test_create_room_with_language_reaches_the_document(server: RunningServer) -> None:
    async with server.http() as http:
        response = await http.post(
            "/api/rooms", json={"name": "Pair session", "language": "python"}
        )
        assert response.status_code == 201
        room = response.json()
        assert room["name"] == "Pair session"
        assert room["language"] == "python"
        assert room["ws_url"] == f"{server.ws_url}/{room['id']}"
        assert room["provider_url"] == server.ws_url
        assert room["page_url"] == f"{server.http_url}/r/{room['id']}"
        async with yclient(server.ws_url, room["id"]) as client:
            assert client.meta.get("language") == "python"
            # An editor switching the language is what the REST view then reports.
            client.meta["language"] = "rust"
            async with yclient(server.ws_url, room["id"]) as other:
                await other.wait_until(lambda: other.meta.get("language") == "rust")
            assert (await http.get(f"/api/rooms/{room['id']}")).json()["language"] == "rust"
            # Any client may write the map: what is not one of the API's languages is none.
            client.meta["language"] = "</script><img src=x>"
            async with yclient(server.ws_url, room["id"]) as other:
                await other.wait_until(lambda: other.meta.get("language") != "rust")
            view = (await http.get(f"/api/rooms/{room['id']}")).json()
            assert view["language"] is None


async def test_create_room_with_chosen_id_and_conflict(server: RunningServer) -> None:
    async with server.http() as http:
        created = await http.post("/api/rooms", json={"id": "team-42"})
        assert created.status_code == 201
        assert created.json()["id"] == created.json()["name"] == "team-42"
        again = await http.post("/api/rooms", json={"id": "team-42"})
        assert again.status_code == 409
        assert again.json()["error"] == "room_exists"


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        (b"{not json", 400, "invalid_json"),
        (b'{"language": "cobol"}', 422, "invalid_body"),
        (b'{"id": "no?query"}', 422, "invalid_body"),
        (b'{"id": ""}', 422, "invalid_body"),
        (b'{"id": "."}', 422, "invalid_body"),  # its page URL would normalise to the lobby
        (b'{"id": ".."}', 422, "invalid_body"),
        (b'{"colour": "red"}', 422, "invalid_body"),
        (b'["a list"]', 422, "invalid_body"),
    ],
)
async def test_bad_create_bodies(
    server: RunningServer, body: bytes, status: int, error: str
) -> None:
    async with server.http() as http:
        response = await http.post("/api/rooms", content=body)
        assert response.status_code == status
        assert response.json()["error"] == error
        assert (await http.get("/api/rooms")).json()["rooms"] == []


async def test_list_shows_live_peer_counts(server: RunningServer) -> None:
    async with server.http() as http:
        await http.post("/api/rooms", json={"id": "quiet"})
        async with yclient(server.ws_url, "busy"), yclient(server.ws_url, "busy"):
            rooms = {room["id"]: room for room in (await http.get("/api/rooms")).json()["rooms"]}
            assert rooms["busy"]["peers"] == 2  # joining over WebSocket creates the room
            assert rooms["quiet"]["peers"] == 0


async def test_unknown_rooms_and_routes_answer_404_json(server: RunningServer) -> None:
    async with server.http() as http:
        for path in ("/api/rooms/ghost", "/api/rooms/ghost/text", "/api/rooms/bad%20id"):
            response = await http.get(path)
            assert response.status_code == 404
            assert response.json()["error"] == "room_not_found"
        assert (await http.delete("/api/rooms/ghost")).status_code == 404
        assert (await http.put("/api/rooms/ghost/text", content="x")).status_code == 404
        missing = await http.get("/api/nothing-here")
        assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
        wrong = await http.patch("/api/rooms")
        assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")


async def test_put_text_is_relayed_and_minimal(server: RunningServer) -> None:
    original = "".join(f"line {n}: é π 😀\n" for n in range(500))
    async with server.http() as http, yclient(server.ws_url, "doc") as client:
        client.text.insert(0, original)
        await poll(lambda: text_is(http, "doc", original))
        size_before = (await http.get("/api/rooms/doc")).json()["size_bytes"]
        changed = original.replace("line 250: é", "line 250: è")
        response = await http.put("/api/rooms/doc/text", content=changed.encode())
        assert response.status_code == 200
        utf16_units = len(changed.encode("utf-16-le")) // 2  # each emoji counts twice
        assert response.json() == {"room": "doc", "name": "codemirror", "length": utf16_units}
        await client.wait_until(lambda: str(client.text) == changed)
        assert (await http.get("/api/rooms/doc/text")).text == changed
        # One character replaced: the stored update is tiny, not a rewrite of 9,000 characters.
        growth = (await http.get("/api/rooms/doc")).json()["size_bytes"] - size_before
        assert 0 < growth < 100


async def test_text_under_another_name_and_bad_text_requests(server: RunningServer) -> None:
    async with server.http() as http:
        await http.post("/api/rooms", json={"id": "notes"})
        put = await http.put("/api/rooms/notes/text?name=scratch", content="free text")
        assert put.status_code == 200
        assert (await http.get("/api/rooms/notes/text?name=scratch")).text == "free text"
        assert (await http.get("/api/rooms/notes/text")).text == ""
        bad_utf8 = await http.put("/api/rooms/notes/text", content=b"\xff\xfe")
        assert (bad_utf8.status_code, bad_utf8.json()["error"]) == (400, "invalid_text")
        for name in ("meta", "a b", ""):
            response = await http.get("/api/rooms/notes/text", params={"name": name})
            assert (response.status_code, response.json()["error"]) == (422, "invalid_text_name")


async def test_text_larger_than_the_limit_is_refused() -> None:
    settings = Settings(store_url="memory://", max_message_bytes=4096)
    async with run_server(settings) as server, server.http() as http:
        await http.post("/api/rooms", json={"id": "small"})
        response = await http.put("/api/rooms/small/text", content=b"x" * 4097)
        assert (response.status_code, response.json()["error"]) == (413, "too_large")

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length to go by
            for _ in range(16):
                yield b"\x00" * 1024

        streamed = await http.post("/api/rooms/small/update", content=chunked())
        assert (streamed.status_code, streamed.json()["error"]) == (413, "too_large")
        assert (await http.get("/api/rooms/small/text")).text == ""


async def test_delete_room_removes_history(server: RunningServer) -> None:
    async with server.http() as http:
        await http.post("/api/rooms", json={"id": "gone"})
        await http.put("/api/rooms/gone/text", content="secret")
        assert (await http.delete("/api/rooms/gone")).status_code == 204
        assert (await http.get("/api/rooms/gone")).status_code == 404
        # Joining the id again starts an empty room: the history is gone, not hidden.
        async with yclient(server.ws_url, "gone") as client:
            assert str(client.text) == ""


async def test_health_and_readiness(server: RunningServer) -> None:
    async with server.http() as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json() == {"status": "ready"}


async def test_cors_lets_only_the_configured_origins_call_from_a_browser(
    settings: Settings,
) -> None:
    front_end = "http://localhost:5173"
    preflight = {
        "Origin": front_end,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    with_cors = settings.model_copy(update={"cors_origins": f"{front_end}, https://b.example"})
    async with run_server(with_cors) as server, server.http() as http:
        allowed = await http.options("/api/rooms/x/text", headers=preflight)
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == front_end
        assert "PUT" in allowed.headers["access-control-allow-methods"]
        renaming = await http.options(
            "/api/rooms/x", headers={**preflight, "Access-Control-Request-Method": "PATCH"}
        )
        assert renaming.status_code == 200
        assert "PATCH" in renaming.headers["access-control-allow-methods"]
        listed = await http.get("/api/rooms", headers={"Origin": front_end})
        assert listed.headers["access-control-allow-origin"] == front_end
        stranger = await http.get("/api/rooms", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers
    async with run_server(settings) as server, server.http() as http:  # the default: none
        listed = await http.get("/api/rooms", headers={"Origin": front_end})
        assert "access-control-allow-origin" not in listed.headers


async def test_the_document_as_a_yjs_update_goes_out_and_comes_in(server: RunningServer) -> None:
    """GET /update loads into any Yjs doc; an update made from it and POSTed reaches every peer."""
    async with server.http() as http, yclient(server.ws_url, "bytes") as peer:
        peer.text.insert(0, "héllo 🎉\n")
        await poll(lambda: text_is(http, "bytes", "héllo 🎉\n"))
        fetched = await http.get("/api/rooms/bytes/update")
        assert fetched.status_code == 200
        assert fetched.headers["content-type"] == "application/octet-stream"
        assert fetched.headers["x-content-type-options"] == "nosniff"
        plain = await http.get("/api/rooms/bytes/text")
        assert plain.headers["x-content-type-options"] == "nosniff"  # user bytes, never HTML
        script: Doc[Text] = Doc()
        script.apply_update(fetched.content)
        text = script.get("codemirror", type=Text)
        assert str(text) == "héllo 🎉\n"

        before = script.get_state()
        text.insert(len(text), "from a script\n")
        posted = await http.post("/api/rooms/bytes/update", content=script.get_update(before))
        assert posted.status_code == 204, posted.text
        await peer.wait_until(lambda: str(peer.text) == "héllo 🎉\nfrom a script\n")
        assert (await http.get("/api/rooms/bytes/text")).text == "héllo 🎉\nfrom a script\n"

        garbage = await http.post("/api/rooms/bytes/update", content=b"\x01\x02garbage")
        assert (garbage.status_code, garbage.json()["error"]) == (422, "update_rejected")
        missing = await http.get("/api/rooms/never-made/update")
        assert missing.status_code == 404
        assert str(peer.text) == "héllo 🎉\nfrom a script\n" and peer.close_code is None


async def test_patch_renames_a_room_and_switches_its_language(server: RunningServer) -> None:
    async with server.http() as http, yclient(server.ws_url, "renamed") as editor:
        changed = await http.patch(
            "/api/rooms/renamed", json={"name": "Pairing: é π", "language": "rust"}
        )
        assert changed.status_code == 200, changed.text
        assert (changed.json()["name"], changed.json()["language"]) == ("Pairing: é π", "rust")
        await editor.wait_until(lambda: editor.meta.get("language") == "rust")
        listed = await http.get("/api/rooms")
        assert [room["name"] for room in listed.json()["rooms"]] == ["Pairing: é π"]
        for body in ({"name": ""}, {"language": "cobol"}, {"owner": "me"}):
            refused = await http.patch("/api/rooms/renamed", json=body)
            assert (refused.status_code, refused.json()["error"]) == (422, "invalid_body"), body
        missing = await http.patch("/api/rooms/never-made", json={"name": "x"})
        assert missing.status_code == 404


async def test_a_body_is_cut_off_at_its_limit_before_the_rest_is_read() -> None:
    pulled = 0

    async def endless_body() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 65536, "more_body": True}

    request = Request({"type": "http", "method": "POST", "headers": []}, endless_body)
    with anyio.fail_after(5), pytest.raises(ApiError) as refused:
        await json_body(request)
    assert (refused.value.status, refused.value.code) == (413, "too_large")
    assert pulled == JSON_BODY_BYTES // 65536 + 1


async def put_text(http: httpx.AsyncClient, room: str, text: str) -> None:
    assert (await http.put(f"/api/rooms/{room}/text", content=text.encode())).is_success


async def test_server_edits_use_one_32_bit_client_id(server: RunningServer) -> None:
    """PUT /text and PATCH (language) write as one Yjs-sized client: a 53-bit id made
    ypy-websocket send the text back as new inserts, and a new id per write grew the state
    vector by one entry a call, forever. Concurrent writes still each land whole."""
    async with server.http() as http, yclient(server.ws_url, "puts") as watcher:
        await http.post("/api/rooms", json={"id": "puts", "language": "python"})
        for number in range(1000):
            response = await http.put("/api/rooms/puts/text", content=f"v{number}\n".encode())
            assert response.is_success
        for language in ("rust", "go", "python"):
            response = await http.patch("/api/rooms/puts", json={"language": language})
            assert response.status_code == 200
        async with anyio.create_task_group() as tasks:
            for number in range(20):
                tasks.start_soon(put_text, http, "puts", f"c{number}\n")
        final = (await http.get("/api/rooms/puts/text")).text
        assert final.startswith("c") and final.endswith("\n") and final.count("\n") == 1
        await watcher.wait_until(lambda: str(watcher.text) == final)
        fetched: Doc[Text] = Doc()
        fetched.apply_update((await http.get("/api/rooms/puts/update")).content)
        writers = decode_state_vector(fetched.get_state())
        assert len(writers) == 1, writers
        assert all(client < 2**32 for client in writers)


async def test_the_room_list_is_paged_newest_first(server: RunningServer) -> None:
    async with server.http() as http:
        for room_id in ["r1", "r2", "r3", "r4", "r5"]:
            assert (await http.post("/api/rooms", json={"id": room_id})).status_code == 201
        seen: list[str] = []
        cursor = None
        for _ in range(3):
            query = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/api/rooms", params=query)).json()
            seen += [room["id"] for room in page["rooms"]]
            cursor = page["next_cursor"]
        assert seen == ["r5", "r4", "r3", "r2", "r1"]
        assert cursor is None
        whole = (await http.get("/api/rooms")).json()
        assert [room["id"] for room in whole["rooms"]] == seen and whole["next_cursor"] is None
        for bad in ("0", "1001", "x", "-1"):
            refused = await http.get("/api/rooms", params={"limit": bad})
            assert refused.status_code == 422
            assert refused.json()["error"] == "invalid_limit"


async def test_rooms_opened_too_fast_or_past_the_cap_are_refused(settings: Settings) -> None:
    """One address made 10,474 rooms in 30 s; now each address has a bucket of openings (a room
    created, or brought into memory), and a process holds a bounded number of rooms."""
    limited = settings.model_copy(update={"room_openings_per_minute": 3, "max_rooms_loaded": 2})
    async with run_server(limited) as server, server.http() as http:
        for room_id in ("o1", "o2", "o3"):
            assert (await http.post("/api/rooms", json={"id": room_id})).status_code == 201
        refused = await http.post("/api/rooms", json={"id": "o4"})
        assert refused.status_code == 429
        assert refused.json()["error"] == "too_many_rooms"
        assert int(refused.headers["Retry-After"]) >= 1
        metrics = server.registry.metrics
        assert metrics.openings_refused["rate"] == 1
    roomy = settings.model_copy(update={"max_rooms_loaded": 2})
    async with run_server(roomy) as server, server.http() as http:
        async with yclient(server.ws_url, "h1"), yclient(server.ws_url, "h2") as second:
            await http.post("/api/rooms", json={"id": "h3"})
            full = await http.get("/api/rooms/h3/text")
            assert full.status_code == 503
            assert full.json()["error"] == "rooms_full"
            async with yclient(server.ws_url, "h4", sync=False) as turned_away:
                assert await turned_away.wait_closed() == 1013
            second.text.insert(0, "the rooms held go on")  # a room in memory is not refused
            assert (await http.get("/api/rooms/h2/text")).status_code == 200
        assert server.registry.metrics.openings_refused["full"] == 2


async def test_a_client_too_slow_with_its_headers_is_closed(settings: Settings) -> None:
    """Slowloris: a request's headers trickling in held the connection for ever (3,000 of them
    for 40 s, none closed). They now have a deadline, a WebSocket's handshake too."""
    slow = settings.model_copy(update={"header_timeout_seconds": 0.5})
    async with run_server(slow) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        await writer.drain()
        with anyio.fail_after(10):
            assert await reader.read() == b""  # closed by the server, nothing answered
        writer.close()
        async with server.http() as http:  # a client that sends its request at once is served
            assert (await http.get("/healthz")).status_code == 200
        async with yclient(server.ws_url, "quick") as quick:
            assert quick.close_code is None
