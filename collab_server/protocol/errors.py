"""The protocol layer's one exception."""

from __future__ import annotations


class ProtocolError(Exception):
    """A client sent bytes that are not a valid y-protocols message.

    `code` is the WebSocket close code the transport answers with (4400-4499: the client must not
    retry the same thing).
    """

    def __init__(self, reason: str, code: int = 4400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
