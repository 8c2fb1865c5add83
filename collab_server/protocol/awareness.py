"""Awareness update payloads: a list of (client id, clock, JSON state) entries."""

from __future__ import annotations

import json
from dataclasses import dataclass

from collab_server.protocol.errors import ProtocolError
from collab_server.protocol.varint import Reader, write_var_string, write_var_uint

# A removed client is sent with the JSON state "null".
NULL_STATE = "null"


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
            json.loads(state)
        except ValueError as error:
            raise ProtocolError("awareness state is not JSON") from error
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
