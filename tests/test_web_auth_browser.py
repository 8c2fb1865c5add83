"""The editor page and the lobby on a server with access tokens, in real Chromium.

The browser side is tests/browser/auth.e2e.mjs (playwright-core driving Debian's Chromium): an
editor's page types, a viewer's page follows but cannot write, a page without a token is refused
and let in by a pasted one. This test serves the app with a secret, mints the tokens, runs the
script, and checks what it reports against the server's own copy. Screenshots land in
artifacts/web-auth/ on every run (tests/test_web_browser.py empties artifacts/web/ when it runs).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from pydantic import SecretStr

from collab_server.auth import ALL_ROOMS, Role, mint_token
from collab_server.settings import Settings
from tests.browser_script import ROOT, require_browser, run_browser_script
from tests.conftest import RunningServer, run_server
from tests.helpers import bearer

pytestmark = [pytest.mark.browser, pytest.mark.anyio]

SCRIPT = ROOT / "tests" / "browser" / "auth.e2e.mjs"
ARTIFACTS = ROOT / "artifacts" / "web-auth"
RUN_SECONDS = 90  # the script's own waits are 10 s at most; it takes ~10 s in all
SECRET = "browser-test-secret-" + "x" * 20
ROOM = "auth-room"


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    with_auth = settings.model_copy(update={"auth_secret": SecretStr(SECRET)})
    async with run_server(with_auth) as running:
        yield running


async def test_editor_viewer_and_refused_pages_in_real_browsers(server: RunningServer) -> None:
    await require_browser()
    editor = mint_token(SECRET, ROOM, Role.EDITOR)
    viewer = mint_token(SECRET, ROOM, Role.VIEWER)
    admin = mint_token(SECRET, ALL_ROOMS, Role.ADMIN)
    async with server.http() as http:
        refused = await http.get(f"/api/rooms/{ROOM}")
        assert refused.status_code == 401, refused.text  # the server is really closed
        created = await http.post(
            "/api/rooms",
            json={"id": ROOM, "name": "Auth session", "language": "plaintext"},
            headers=bearer(editor),
        )
        assert created.status_code == 201, created.text

    result = await run_browser_script(
        SCRIPT,
        ARTIFACTS,
        server.http_url,
        str(ARTIFACTS),
        ROOM,
        editor,
        viewer,
        admin,
        mint_token(SECRET, ALL_ROOMS, Role.EDITOR),
        seconds=RUN_SECONDS,
    )
    async with server.http() as http:
        text = await http.get(
            f"/api/rooms/{ROOM}/text", params={"name": "codemirror"}, headers=bearer(viewer)
        )
    assert text.status_code == 200, text.text
    assert text.text == result["text"]  # the server's copy is what the pages show
    assert text.text == "hello from Ada\nsecond line\nthird line, after Vic tried\n"
    for name in ("auth-editor-1280", "auth-viewer-400", "auth-denied-400", "auth-lobby-1280"):
        assert (await anyio.Path(ARTIFACTS / f"{name}.png").stat()).st_size > 10_000, name
    assert (await anyio.Path(ARTIFACTS / "auth-lobby-denied-400.png").stat()).st_size > 5_000
