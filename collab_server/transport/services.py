"""What every route and the WebSocket endpoint use: one `Services` object per app, typed.

`create_app` builds it and keeps it on `app.state`; handlers reach it with `services(request)`.
The registry and the completion service exist only once the lifespan has started them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from starlette.requests import HTTPConnection

from collab_server.auth import Authenticator
from collab_server.completion.service import CompletionService
from collab_server.metrics import Metrics
from collab_server.rooms.catalog import RoomCatalog
from collab_server.rooms.history import RoomHistory
from collab_server.rooms.registry import RoomRegistry
from collab_server.settings import Settings


@dataclass(eq=False)
class Services:
    settings: Settings
    auth: Authenticator
    metrics: Metrics  # what /metrics serves; the rooms and the transport count into it
    _registry: RoomRegistry | None = field(default=None, init=False, repr=False)
    _catalog: RoomCatalog | None = field(default=None, init=False, repr=False)
    _history: RoomHistory | None = field(default=None, init=False, repr=False)
    _completion: CompletionService | None = field(default=None, init=False, repr=False)

    def start(self, registry: RoomRegistry, completion: CompletionService) -> None:
        """Called by the lifespan once both run; not undone at its end, as handlers still
        finishing may read them."""
        self._registry = registry
        self._catalog = RoomCatalog(registry)
        self._history = RoomHistory(registry, named_max=self.settings.named_versions_max)
        self._completion = completion

    @property
    def registry(self) -> RoomRegistry:
        if self._registry is None:
            raise RuntimeError("no room registry: the app's lifespan has not started")
        return self._registry

    @property
    def catalog(self) -> RoomCatalog:
        """The rooms' lifecycle, for the REST routes."""
        if self._catalog is None:
            raise RuntimeError("no room catalog: the app's lifespan has not started")
        return self._catalog

    @property
    def history(self) -> RoomHistory:
        """The rooms' versions, for the history routes."""
        if self._history is None:
            raise RuntimeError("no room history: the app's lifespan has not started")
        return self._history

    @property
    def completion(self) -> CompletionService:
        if self._completion is None:
            raise RuntimeError("no completion service: the app's lifespan has not started")
        return self._completion


def services(connection: HTTPConnection) -> Services:
    """The app's services, for a request or a WebSocket."""
    found: Services = connection.app.state.services
    return found
