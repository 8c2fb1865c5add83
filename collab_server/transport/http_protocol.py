"""uvicorn's httptools protocol with a deadline for each request's headers.

uvicorn closes an idle keep-alive connection after `timeout_keep_alive`, but once a request's
first byte has arrived it waits for the rest of its headers for ever: 3,000 connections each
sending a header line now and then (slowloris) were all held 40 s, and under a 1,024-descriptor
limit they lock every new client out. Here the headers (a WebSocket's handshake request
included) must be complete within the deadline from the connection's opening, or from the
first byte of a later request on it; otherwise the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    header_timeout = 10.0  # seconds; `with_header_timeout` makes a class with another one
    _header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:
            self._start_deadline()

    def on_headers_complete(self) -> None:
        self._cancel_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def handle_websocket_upgrade(self) -> None:
        super().handle_websocket_upgrade()
        # The WebSocket protocol has the connection now. uvicorn breaks the parser's cycle with
        # this protocol (its callbacks) when an HTTP connection is lost, which this one never
        # will be: left alone, every WebSocket's HTTP half waited for a full collection.
        self.parser = None  # type: ignore[assignment]

    def _start_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            logger.info("closed a connection from %s: headers not complete in time", self.client)
            self.transport.close()


def with_header_timeout(seconds: float) -> type[HeaderDeadlineProtocol]:
    return type("HeaderDeadlineProtocol", (HeaderDeadlineProtocol,), {"header_timeout": seconds})
