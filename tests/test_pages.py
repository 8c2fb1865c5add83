"""The web editor's pages and assets, over real HTTP (no browser: tests/test_web_browser.py)."""

from __future__ import annotations

import re

import httpx
import pytest

from collab_server.transport.pages import STATIC_DIR as STATIC
from tests.conftest import RunningServer

pytestmark = pytest.mark.anyio

HTML = {"accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


async def test_lobby_is_served_with_a_policy_that_allows_this_server_only(
    server: RunningServer,
) -> None:
    async with server.http() as http:
        response = await http.get("/", headers=HTML)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "connect-src 'self'" in policy
    assert re.search(r'src="static/lobby\.js\?v=[0-9a-f]{12}"', response.text)


async def test_any_valid_room_id_opens_the_editor(server: RunningServer) -> None:
    async with server.http() as http:
        response = await http.get("/r/new-room_2.draft", headers=HTML)
    assert response.status_code == 200
    assert "content-security-policy" in response.headers
    assert re.search(r'src="\.\./static/editor\.js\?v=[0-9a-f]{12}"', response.text)


@pytest.mark.parametrize("path", ["/r/a%3Fb", "/r/a//b", "/r/" + "x" * 257])
async def test_an_invalid_room_id_is_a_clear_404(server: RunningServer, path: str) -> None:
    async with server.http() as http:
        page = await http.get(path, headers=HTML)
        api = await http.get(path, headers={"accept": "application/json"})
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "No such room" in page.text
    assert 'href="/"' in page.text
    assert api.status_code == 404
    assert api.json()["error"] == "room_not_found"


async def _assets_of(http: httpx.AsyncClient, page: str) -> set[str]:
    response = await http.get(page, headers=HTML)
    assert response.status_code == 200
    base = httpx.URL(str(http.base_url)).join(page)
    return {str(base.join(link)) for link in re.findall(r'(?:src|href)="([^"#]+)"', response.text)}


async def test_every_asset_the_pages_load_is_served(server: RunningServer) -> None:
    """Each script, stylesheet and icon of both pages, and each chunk the scripts import."""
    async with server.http() as http:
        pending = await _assets_of(http, "/") | await _assets_of(http, "/r/some-room")
        pending = {url for url in pending if "/static/" in url}
        seen: set[str] = set()
        while pending:
            url = pending.pop()
            seen.add(url)
            response = await http.get(url)
            assert response.status_code == 200, url
            assert response.content, url
            if url.split("?")[0].endswith(".js"):
                assert response.headers["content-type"].startswith("text/javascript"), url
                if len(response.content) > 1024:
                    assert response.headers["content-encoding"] == "gzip", url
                for chunk in re.findall(r'"(\./(?:chunks/)?[\w-]+\.js)"', response.text):
                    joined = str(httpx.URL(url).join(chunk))
                    if joined not in seen:
                        pending.add(joined)
    reached = {url.rsplit("/", 1)[1] for url in seen if "/static/chunks/" in url}
    assert reached == {path.name for path in (STATIC / "chunks").iterdir()}
