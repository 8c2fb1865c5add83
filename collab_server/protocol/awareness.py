"""Awareness update payloads: a list of (client id, clock, JSON state) entries."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from collab_server.protocol.errors import ProtocolError
from collab_server.protocol.varint import Reader, write_var_string, write_var_uint

# A removed client is sent with the JSON state "null".
NULL_STATE = "null"

# y-codemirror.next writes a peer's `user.color` and `user.colorLight` into style attributes as
# they are: "red; position: fixed; inset: 0" would cover every other editor in the room. A CSS
# colour (hex, a name, rgb()/hsl()/oklch()/color-mix() ...) needs none of ; : { } ! quotes < > \.
USER_COLOUR_FIELDS = ("color", "colorLight")
CSS_COLOUR = re.compile(r"[#A-Za-z0-9(),.%/ +-]{1,64}")


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str  # JSON text, kept as received; "null" means the client left

    @property
    def removed(self) -> bool:
        return self.state == NULL_STATE


def decode_awareness(payload: bytes) -> list[AwarenessEntry]:
    reader = Reader(payload)
    count = reader.read_var_uint()
    entries = []
    for _ in range(count):
        client_id = reader.read_var_uint()
        clock = reader.read_var_uint()
        state = reader.read_var_string() or NULL_STATE
        # Every other client runs JSON.parse on this text: garbage here would break them all.
        try:
            parsed = json.loads(state)
        except ValueError as error:
            raise ProtocolError("awareness state is not JSON") from error
        _check_colours(parsed)
        entries.append(AwarenessEntry(client_id, clock, state))
    reader.expect_end()
    return entries


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    parts = [write_var_uint(len(entries))]
    for entry in entries:
        parts.append(write_var_uint(entry.client_id))
        parts.append(write_var_uint(entry.clock))
        parts.append(write_var_string(entry.state))
    return b"".join(parts)


def _check_colours(state: object) -> None:
    user = state.get("user") if isinstance(state, dict) else None
    if not isinstance(user, dict):
        return
    for field in USER_COLOUR_FIELDS:
        colour = user.get(field)
        if colour is not None and not (isinstance(colour, str) and CSS_COLOUR.fullmatch(colour)):
            raise ProtocolError(f"awareness user.{field} is not a CSS colour")
