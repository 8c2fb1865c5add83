"""The editor page and the lobby on a server with access tokens, in real Chromium.

The browser side is tests/browser/auth.e2e.mjs (playwright-core driving Debian's Chromium): an
editor's page types, a viewer's page follows but cannot write, a page without a token is refused
and let in by a pasted one. This test serves the app with a secret, mints the tokens, runs the
script, and checks what it reports against the server's own copy. Screenshots land in
artifacts/web-auth/ on every run (tests/test_web_browser.py empties artifacts/web/ when it runs).
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from pydantic import SecretStr

from collab_server.auth import ALL_ROOMS, Role, mint_token
from collab_server.settings import Settings
from tests.conftest import RunningServer, run_server

pytestmark = [pytest.mark.browser, pytest.mark.anyio]

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "tests" / "browser" / "auth.e2e.mjs"
ARTIFACTS = ROOT / "artifacts" / "web-auth"
CHROMIUM = Path("/usr/bin/chromium")
RUN_SECONDS = 90  # the script's own waits are 10 s at most; it takes ~10 s in all
SECRET = "browser-test-secret-" + "x" * 20
ROOM = "auth-room"


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    with_auth = settings.model_copy(update={"auth_secret": SecretStr(SECRET)})
    async with run_server(with_auth) as running:
        yield running


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def _run_script(server: RunningServer, *tokens: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        "node",
        str(SCRIPT),
        server.http_url,
        str(ARTIFACTS),
        ROOM,
        *tokens,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        with anyio.fail_after(RUN_SECONDS):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:  # timed out: playwright closes Chromium on SIGTERM
            process.terminate()
            with anyio.move_on_after(10, shield=True):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_editor_viewer_and_refused_pages_in_real_browsers(server: RunningServer) -> None:
    if not await anyio.Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser-deps` installs Debian's chromium")
    playwright = anyio.Path(ROOT / "node_modules" / "playwright-core")
    if shutil.which("node") is None or not await playwright.exists():
        pytest.fail("node and playwright-core are needed: `npm ci` at the repository root")

    editor = mint_token(SECRET, ROOM, Role.EDITOR)
    viewer = mint_token(SECRET, ROOM, Role.VIEWER)
    admin = mint_token(SECRET, ALL_ROOMS, Role.ADMIN)
    async with server.http() as http:
        refused = await http.get(f"/api/rooms/{ROOM}")
        assert refused.status_code == 401, refused.text  # the server is really closed
        created = await http.post(
            "/api/rooms",
            json={"id": ROOM, "name": "Auth session", "language": "plaintext"},
            headers=_bearer(editor),
        )
        assert created.status_code == 201, created.text

    await anyio.to_thread.run_sync(lambda: shutil.rmtree(ARTIFACTS, ignore_errors=True))
    code, stdout, stderr = await _run_script(server, editor, viewer, admin)

    assert code == 0, f"browser script failed:\n{stdout}\n{stderr}"
    reports = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    result = reports[-1]["result"]
    async with server.http() as http:
        text = await http.get(
            f"/api/rooms/{ROOM}/text", params={"name": "codemirror"}, headers=_bearer(viewer)
        )
    assert text.status_code == 200, text.text
    assert text.text == result["text"]  # the server's copy is what the pages show
    assert text.text == "hello from Ada\nsecond line\nthird line, after Vic tried\n"
    for name in ("auth-editor-1280", "auth-viewer-400", "auth-denied-400", "auth-lobby-1280"):
        assert (await anyio.Path(ARTIFACTS / f"{name}.png").stat()).st_size > 10_000, name
    assert (await anyio.Path(ARTIFACTS / "auth-lobby-denied-400.png").stat()).st_size > 5_000
