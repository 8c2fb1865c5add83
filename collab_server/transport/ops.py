"""The routes for operators and their tools: `/metrics` (Prometheus), `/healthz`, `/readyz`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from collab_server.auth import Role
from collab_server.metrics import exposition
from collab_server.transport.access import require
from collab_server.transport.services import services


async def metrics(request: Request) -> Response:
    """Prometheus text; with access control on, it needs an admin token for every room."""
    require(request, Role.ADMIN)
    app_services = services(request)
    text = exposition(app_services.metrics, app_services.registry.gauges())
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")


async def healthz(request: Request) -> Response:
    """503 once the process can no longer serve rooms (a supervisor should restart it)."""
    if not services(request).registry.running:
        return JSONResponse({"status": "failed", "reason": "rooms are not served"}, status_code=503)
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    if services(request).registry.store.is_ready():
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready", "reason": "store unavailable"}, status_code=503)


routes = [
    Route("/metrics", metrics, methods=["GET"]),
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
]
