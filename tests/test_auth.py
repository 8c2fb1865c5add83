"""Access tokens: the REST API, the WebSocket (pycrdt and stock y-websocket clients) and the CLI.

Every server here has COLLAB_AUTH_SECRET set; the rest of the suite runs without one and so
checks that an open server needs no token.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import jwt
import pytest

from collab_server.auth import ALL_ROOMS, Authenticator, Forbidden, Grant, Role, Unauthenticated
from collab_server.auth import mint_token as mint
from collab_server.cli import main as cli_main
from collab_server.protocol import CloseCode
from collab_server.protocol.varint import Reader
from collab_server.settings import Settings
from tests.conftest import RunningServer, run_server
from tests.helpers import bearer
from tests.nodeclients import NodeClients, node_clients
from tests.polling import poll
from tests.yclient import YClient, yclient

pytestmark = pytest.mark.anyio

SECRET = "test-secret-" + "0123456789abcdef" * 4  # long enough for HS384 too
ROOM = "guarded"


def token(role: Role, room: str = ROOM, ttl_seconds: float | None = None) -> str:
    return mint(SECRET, room, role, ttl_seconds)


EDITOR = bearer(token(Role.EDITOR))
VIEWER = bearer(token(Role.VIEWER))
ADMIN_EVERYWHERE = bearer(token(Role.ADMIN, ALL_ROOMS))


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    guarded = settings.model_copy(update={"auth_secret": Settings(auth_secret=SECRET).auth_secret})
    async with run_server(guarded) as running:
        async with running.http() as http:
            created = await http.post("/api/rooms", json={"id": ROOM}, headers=EDITOR)
            assert created.status_code == 201, created.text
        yield running


# -- tokens ----------------------------------------------------------------------------------------


def test_a_minted_token_grants_its_room_and_role() -> None:
    grant = Authenticator(SECRET).grant(token(Role.VIEWER))
    assert grant == Grant(ROOM, Role.VIEWER)
    grant.require(Role.VIEWER, ROOM)
    with pytest.raises(Forbidden):
        grant.require(Role.EDITOR, ROOM)
    with pytest.raises(Forbidden):
        grant.require(Role.VIEWER, "elsewhere")
    with pytest.raises(Forbidden):  # one room's token does not reach what spans every room
        grant.require(Role.VIEWER)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (None, "required"),
        ("", "required"),
        ("not-a-jwt", "not valid"),
        (mint("another-secret-that-is-also-long-enough", ROOM, Role.ADMIN), "not valid"),
        (token(Role.EDITOR, ttl_seconds=-120), "expired"),
        (jwt.encode({"room": ROOM}, SECRET, algorithm="HS256"), "not valid"),  # no role
        (jwt.encode({"room": ROOM, "role": "owner"}, SECRET, algorithm="HS256"), "unknown"),
        (jwt.encode({"room": ROOM, "role": "admin"}, SECRET, algorithm="HS384"), "not valid"),
    ],
)
def test_tokens_this_server_did_not_sign_as_given_are_refused(bad: str | None, reason: str) -> None:
    with pytest.raises(Unauthenticated, match=reason):
        Authenticator(SECRET).grant(bad)


def test_a_token_from_a_clock_a_little_ahead_is_accepted() -> None:
    ahead = jwt.encode(
        {"room": ROOM, "role": "viewer", "iat": int(time.time()) + 30}, SECRET, algorithm="HS256"
    )
    assert Authenticator(SECRET).grant(ahead) == Grant(ROOM, Role.VIEWER)


def test_without_a_secret_everyone_may_do_everything() -> None:
    grant = Authenticator(None).grant(None)
    grant.require(Role.ADMIN)
    grant.require(Role.ADMIN, "any-room")


def test_a_short_secret_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="at least 32 characters"):
        Settings(auth_secret="too-short")


def test_the_cli_mints_tokens_the_server_accepts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLLAB_AUTH_SECRET", SECRET)
    cli_main(["token", "--room", ROOM, "--role", "viewer", "--ttl", "60"])
    printed = capsys.readouterr().out.strip()
    assert Authenticator(SECRET).grant(printed) == Grant(ROOM, Role.VIEWER)
    assert jwt.decode(printed, SECRET, algorithms=["HS256"])["exp"] <= time.time() + 61


def test_the_cli_mints_tokens_that_name_their_holder(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLLAB_AUTH_SECRET", SECRET)
    cli_main(["token", "--room", ROOM, "--user", "u-7", "--name", "Ada Lovelace"])
    printed = capsys.readouterr().out.strip()
    assert Authenticator(SECRET).grant(printed) == Grant(ROOM, Role.EDITOR, "u-7", "Ada Lovelace")
    odd = jwt.encode({"room": ROOM, "role": "editor", "name": ["x"]}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="sub and name must be strings"):
        Authenticator(SECRET).grant(odd)


def test_the_cli_says_what_is_wrong_with_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAB_AUTH_SECRET", "short")
    with pytest.raises(SystemExit, match=r"COLLAB_AUTH_SECRET: .*at least 32"):
        cli_main(["token"])


# -- REST ------------------------------------------------------------------------------------------


async def test_rest_without_a_valid_token_is_401_with_a_json_body(server: RunningServer) -> None:
    async with server.http() as http:
        for headers in ({}, bearer("garbage"), bearer(token(Role.ADMIN, ttl_seconds=-120))):
            response = await http.get(f"/api/rooms/{ROOM}/text", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"] == "unauthorized"
            assert response.headers["www-authenticate"] == "Bearer"
        # Who asks is checked before what is asked.
        bad_body = await http.post("/api/rooms", content=b"{not json")
        assert bad_body.status_code == 401


async def test_each_role_does_what_it_may_and_no_more(server: RunningServer) -> None:
    async with server.http() as http:
        written = await http.put(f"/api/rooms/{ROOM}/text", content=b"x = 1\n", headers=EDITOR)
        assert written.status_code == 200, written.text
        read = await http.get(f"/api/rooms/{ROOM}/text", headers=VIEWER)
        assert read.text == "x = 1\n"
        refused = await http.put(f"/api/rooms/{ROOM}/text", content=b"gone", headers=VIEWER)
        assert (refused.status_code, refused.json()["error"]) == (403, "forbidden")
        state = await http.get(f"/api/rooms/{ROOM}/update", headers=VIEWER)
        assert state.status_code == 200
        not_posted = await http.post(f"/api/rooms/{ROOM}/update", content=b"", headers=VIEWER)
        assert not_posted.status_code == 403
        not_renamed = await http.patch(f"/api/rooms/{ROOM}", json={"name": "x"}, headers=VIEWER)
        assert not_renamed.status_code == 403
        renamed = await http.patch(f"/api/rooms/{ROOM}", json={"name": "Ours"}, headers=EDITOR)
        assert renamed.status_code == 200
        not_deleted = await http.delete(f"/api/rooms/{ROOM}", headers=EDITOR)
        assert not_deleted.status_code == 403
        assert (await http.get(f"/api/rooms/{ROOM}/text", headers=VIEWER)).text == "x = 1\n"
        deleted = await http.delete(f"/api/rooms/{ROOM}", headers=bearer(token(Role.ADMIN)))
        assert deleted.status_code == 204


async def test_a_room_token_reaches_no_other_room(server: RunningServer) -> None:
    async with server.http() as http:
        other = await http.post("/api/rooms", json={"id": "other"}, headers=ADMIN_EVERYWHERE)
        assert other.status_code == 201
        for method, path in [
            ("GET", "/api/rooms/other"),
            ("GET", "/api/rooms/other/text"),
            ("PUT", "/api/rooms/other/text"),
            ("POST", "/api/rooms/other/complete"),
            ("GET", "/api/rooms/never-made"),  # 403, not 404: a token does not probe names
        ]:
            response = await http.request(method, path, headers=EDITOR, content=b"{}")
            assert response.status_code == 403, (method, path, response.text)
        generated = await http.post("/api/rooms", json={}, headers=EDITOR)
        assert generated.status_code == 403  # an id chosen by the server could be any room
        own = await http.post(
            "/api/rooms", json={"id": "mine"}, headers=bearer(token(Role.EDITOR, "mine"))
        )
        assert own.status_code == 201
        listed = await http.get("/api/rooms", headers=EDITOR)
        assert [room["id"] for room in listed.json()["rooms"]] == [ROOM]
        everything = await http.get("/api/rooms", headers=ADMIN_EVERYWHERE)
        assert {room["id"] for room in everything.json()["rooms"]} == {ROOM, "other", "mine"}


async def test_pages_and_health_need_no_token(server: RunningServer) -> None:
    async with server.http() as http:
        for path in ("/", f"/r/{ROOM}", "/healthz", "/readyz"):
            assert (await http.get(path)).status_code == 200, path


# -- WebSocket -------------------------------------------------------------------------------------


def append(client: YClient, text: str) -> None:
    client.text.insert(len(client.text), text)


def _denial_reason(payload: bytes) -> str:
    """The reason in a y-protocols "permission denied" auth message (type 0, then a string)."""
    reader = Reader(payload)
    assert reader.read_var_uint() == 0
    return reader.read_var_string()


@pytest.mark.parametrize(
    ("query", "code", "reason"),
    [
        ("", CloseCode.UNAUTHORIZED, "required"),
        ("?token=garbage", CloseCode.UNAUTHORIZED, "not valid"),
        (f"?token={token(Role.EDITOR, ttl_seconds=-120)}", CloseCode.UNAUTHORIZED, "expired"),
        (f"?token={token(Role.ADMIN, 'other')}", CloseCode.FORBIDDEN, "not for room"),
    ],
)
async def test_a_socket_without_a_fitting_token_is_told_why_and_closed(
    server: RunningServer, query: str, code: int, reason: str
) -> None:
    async with yclient(server.ws_url, ROOM + query, sync=False) as refused:
        assert await refused.wait_closed() == code
        assert len(refused.auth_messages) == 1
        assert reason in _denial_reason(refused.auth_messages[0])
        assert not refused.synced.is_set()


async def test_a_viewer_watches_but_its_edits_go_nowhere(server: RunningServer) -> None:
    async with yclient(server.ws_url, ROOM, headers=EDITOR) as editor:  # a header works as well
        async with yclient(server.ws_url, f"{ROOM}?token={token(Role.VIEWER)}") as viewer:
            append(editor, "def f():\n")
            await viewer.wait_until(lambda: str(viewer.text) == "def f():\n")
            viewer.set_awareness(1, {"user": {"name": "Vic"}})  # its cursor shows all the same
            await editor.wait_until(lambda: viewer.doc.client_id in editor.awareness)
            append(viewer, "    sneaky()\n")
            assert viewer.close_code is None
        # The server reads a client's messages in order and lets it go only after the last one.
        await poll(
            lambda: (room := server.registry.loaded(ROOM)) is not None and len(room.peers) == 1
        )
        async with server.http() as http:
            text = await http.get(f"/api/rooms/{ROOM}/text", headers=VIEWER)
        assert text.text == str(editor.text) == "def f():\n"
        assert editor.close_code is None


async def test_a_viewer_cannot_create_a_room_by_joining_it(server: RunningServer) -> None:
    everywhere = f"?token={token(Role.VIEWER, ALL_ROOMS)}"
    async with yclient(server.ws_url, "not-yet" + everywhere, sync=False) as viewer:
        assert await viewer.wait_closed() == CloseCode.ROOM_DELETED
    async with server.http() as http:
        assert (await http.get("/api/rooms/not-yet", headers=ADMIN_EVERYWHERE)).status_code == 404
    async with yclient(server.ws_url, f"not-yet?token={token(Role.EDITOR, 'not-yet')}"):
        pass  # an editor may
    async with yclient(server.ws_url, "not-yet" + everywhere) as viewer:  # and then a viewer too
        assert viewer.close_code is None


async def test_stock_clients_connect_with_params_and_stop_on_a_bad_token(
    server: RunningServer,
) -> None:
    async with node_clients(server.ws_url) as node:
        await node.open("a", ROOM, params={"token": token(Role.EDITOR)})
        await node.open("b", ROOM, params={"token": token(Role.EDITOR)})
        await node.insert("a", 0, "hello")
        assert await node.wait_text(["a", "b"], "hello") == "hello"
        await node.open("viewer", ROOM, params={"token": token(Role.VIEWER)})  # syncs as usual
        assert await node.text("viewer") == "hello"
        await node.open("intruder", ROOM, params={"token": "forged"}, sync=False)
        status = await _status_once_closed(node, "intruder")
        assert status["terminal"] == [
            {"code": CloseCode.UNAUTHORIZED, "reason": "the token is not valid"}
        ]
        # The client stops for good: no retry loop on a bad token.
        assert status["shouldConnect"] is False and status["connects"] == 1
        assert await node.text("intruder") == ""


async def _status_once_closed(node: NodeClients, client: str) -> dict[str, object]:
    status: dict[str, object] = await node.call("waitClosed", client=client, count=1)
    return status


async def test_metrics_need_an_admin_token_for_every_room(server: RunningServer) -> None:
    async with server.http() as http:
        assert (await http.get("/metrics")).status_code == 401
        room_admin = bearer(token(Role.ADMIN))
        assert (await http.get("/metrics", headers=room_admin)).status_code == 403
        scraped = await http.get("/metrics", headers=ADMIN_EVERYWHERE)
        assert scraped.status_code == 200 and "collab_peers 0" in scraped.text


def test_an_empty_secret_variable_means_no_access_control(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAB_AUTH_SECRET", "")  # what docker compose passes for ${VAR:-}
    assert Settings().auth_secret is None
