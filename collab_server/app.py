"""The ASGI application: its services, its routes, and the one lifespan that owns store ->
registry, completion."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import WebSocketRoute

from collab_server.auth import Authenticator
from collab_server.cluster.replication import ClusterReplication
from collab_server.completion.service import CompletionService
from collab_server.metrics import Metrics
from collab_server.rooms.memory import FullCollections
from collab_server.rooms.registry import RoomRegistry
from collab_server.settings import Settings
from collab_server.transport import completion, ops, pages, rest, versions
from collab_server.transport.errors import exception_handlers
from collab_server.transport.room_urls import ANY_NAME, RoomSegments
from collab_server.transport.services import Services
from collab_server.transport.websocket import serve_websocket
from persistence import is_postgres_url, open_store


def create_app(
    settings: Settings, completion_service: CompletionService | None = None
) -> Starlette:
    """The app; `completion_service`: one whose workers were started ahead (`cli.serve`)."""
    if settings.redis_url and not is_postgres_url(settings.store_url):
        # Processes that relay to each other must also read and write one shared log.
        raise ValueError("COLLAB_REDIS_URL needs a PostgreSQL COLLAB_STORE_URL")

    secret = settings.auth_secret
    services = Services(
        settings,
        Authenticator(secret.get_secret_value() if secret is not None else None),
        Metrics(),
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = open_store(
            settings.store_url, outage_buffer_bytes=settings.store_outage_buffer_bytes
        )
        await store.open()
        try:
            async with AsyncExitStack() as stack:
                await stack.enter_async_context(FullCollections(settings.full_gc_seconds))
                replication = None
                if settings.redis_url:
                    replication = await stack.enter_async_context(
                        ClusterReplication(settings.redis_url)
                    )
                registry = await stack.enter_async_context(
                    RoomRegistry(store, settings, services.metrics, replication)
                )
                completer = completion_service or CompletionService(settings)
                await stack.enter_async_context(completer)
                services.start(registry, completer)
                yield
        finally:
            await store.close()

    app = Starlette(
        routes=[
            *rest.routes,
            *versions.routes,
            *ops.routes,
            *completion.routes,
            *pages.routes,
            # Any name reaches us, so a refused one gets a close code and its reason, not a 403.
            WebSocketRoute(f"/ws/{ANY_NAME}", serve_websocket),
        ],
        exception_handlers=exception_handlers,
        lifespan=lifespan,
        middleware=_middleware(settings),
    )
    app.state.services = services  # what `transport.services.services()` reads
    return app


def _middleware(settings: Settings) -> list[Middleware]:
    """Room ids as one URL segment; CORS for front ends served from elsewhere (none by default)."""
    segments = Middleware(RoomSegments)
    if not settings.cors_origin_list:
        return [segments]
    return [
        segments,
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After"],
            max_age=3600,
        ),
    ]
