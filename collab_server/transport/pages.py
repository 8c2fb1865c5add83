"""The web editor's pages: the lobby at `/`, a room's editor at `/r/{room}`, and `/static`.

The pages and their scripts are built from `web/` into `collab_server/static/` (`make web`) and
committed, so serving them needs no Node. Every page is served with a Content-Security-Policy
that lets it talk to this server only.
"""

from __future__ import annotations

import html
from pathlib import Path
from urllib.parse import quote

import anyio
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from collab_server.rooms.ids import room_id_problem
from collab_server.transport.errors import ApiError
from collab_server.transport.room_urls import ANY_NAME

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

# 'self' covers the same-origin ws:/wss: URL the editor computes from its location. CodeMirror
# writes its styles into <style> elements, hence 'unsafe-inline' for styles only.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",  # the scripts they name carry a version, the pages do not
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}


async def _page(name: str) -> Response:
    path = STATIC_DIR / name
    if not await anyio.Path(path).is_file():
        raise ApiError(503, "web_editor_not_built", "the web editor is not built: run `make web`")
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


def _not_found_page(request: Request, room_id: str, problem: str) -> Response:
    lobby = html.escape(request.scope.get("root_path", "") + "/", quote=True)
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>No such room · Collab</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; color: #1c2029; background: #f4f5f8; margin: 0;
  display: grid; place-items: center; min-height: 100vh; padding: 16px; box-sizing: border-box; }}
main {{ background: #fff; border: 1px solid #e1e4ea; border-radius: 12px; padding: 24px;
  max-width: 32rem; }}
h1 {{ font-size: 20px; margin: 0 0 8px; }}
code {{ background: #f1f3f6; padding: 1px 5px; border-radius: 4px; overflow-wrap: anywhere; }}
a {{ color: #4338ca; font-weight: 600; }}
</style></head>
<body><main>
<h1>No such room</h1>
<p><code>{html.escape(room_id[:200])}</code> is not a room name: {html.escape(problem)}.</p>
<p><a href="{lobby}">See all rooms, or start one</a></p>
</main></body></html>
"""
    return HTMLResponse(body, status_code=404, headers=PAGE_HEADERS)


async def lobby(request: Request) -> Response:
    return await _page("index.html")


async def editor(request: Request) -> Response:
    """A room's editor. Any valid id opens one: the room is created when the page joins it."""
    room_id: str = request.path_params["room"]
    problem = room_id_problem(room_id)
    if problem is not None:
        if _wants_html(request):
            return _not_found_page(request, room_id, problem)
        raise ApiError(404, "room_not_found", f"{room_id[:200]!r} is not a room name: {problem}")
    slashes = _raw_room(request).count("/")
    if slashes:
        # The page finds its scripts, the server and its room relative to its own URL: a name
        # with slashes (`/r/team/main.py`) is served as one segment (`/r/team%2Fmain.py`).
        # Relative, so that it holds behind a proxy's path prefix; the fragment survives it.
        target = "../" * slashes + quote(room_id, safe="")
        query = request.url.query
        return RedirectResponse(f"{target}?{query}" if query else target, status_code=308)
    return await _page("room.html")


def _raw_room(request: Request) -> str:
    """The room part of the editor's URL as the client sent it (still percent-encoded)."""
    raw_path: bytes | None = request.scope.get("raw_path")
    if raw_path is None:
        return ""
    raw = raw_path.decode("latin-1")
    at = raw.find("/r/")
    return raw[at + len("/r/") :] if at >= 0 else ""  # "/%72/...": not redirected


routes: list[BaseRoute] = [
    Route("/", lobby, methods=["GET"]),
    # Any name reaches the handler: slashes are redirected, a refused name is told why.
    Route(f"/r/{ANY_NAME}", editor, methods=["GET"]),
    # The editor's scripts are ~450 kB, ~130 kB gzipped; the rest of the server sends no gzip.
    Mount(
        "/static",
        GZipMiddleware(StaticFiles(directory=STATIC_DIR, check_dir=False), compresslevel=6),
        name="static",
    ),
]
