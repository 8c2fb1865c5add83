"""Awareness update payloads: a list of (client id, clock, JSON state) entries, and the checks a
state must pass before the server relays it to every editor in the room.

Every other client runs `JSON.parse` on a state and hands parts of it to y-codemirror.next, whose
remote-caret plugin (src/y-remote-selections.js, 0.3.x) reads only this, for each other client:

- `user.color`, `user.colorLight`: written into style attributes as they are;
- `user.name`: a caret's label (any value, made text);
- `cursor.anchor` and `cursor.head`, when `cursor`, `anchor` and `head` are all non-null: each is
  passed, as parsed, to yjs's `createAbsolutePositionFromRelativePosition`, which reads `.item`
  (throws unless null or an ID), then, if `item` is null, `.tname` (a root type's name), else
  `.type` (an ID; throws if missing, and throws if both are null); an ID's `client` and `clock`
  must be non-negative integers (a string or negative clock throws, a fraction gives a
  fractional index). One throw disables the plugin: every remote caret vanishes in that page.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from collab_server.protocol.errors import ProtocolError
from collab_server.protocol.varint import MAX_VAR_UINT, Reader, write_var_uint

# A removed client is sent with the JSON state "null".
NULL_STATE = "null"

# Close codes of the refusals here (the stock client does not reconnect after 4400-4499).
STATE_TOO_LARGE = 4413  # one state over its size limit, as for a message over its limit
PRESENCE_FULL = 4429  # more presence than one connection or one room may hold

# Our editor's state is about 300 bytes (a name, two colours, two relative positions); 64 KiB
# leaves room for other front ends' extras (avatar URLs, a status) and bounds what one entry
# costs every peer in the room.
MAX_STATE_BYTES = 64 * 1024
# Real states nest 4 deep (cursor.anchor.item.client); Python's json recursed out of its stack
# (RecursionError) on states nested about a thousand deep.
MAX_STATE_DEPTH = 32
# Our editor cuts names at 40 characters; a caret label wider than this is no name.
MAX_NAME_LENGTH = 128
# y-websocket echoes every awareness change it hears, the greeting included, so one genuine
# message carries at most what a room holds (rooms.presence.MAX_ROOM_ENTRIES); twice that.
MAX_ENTRIES_PER_MESSAGE = 2000

# y-codemirror.next writes a peer's `user.color` and `user.colorLight` into style attributes as
# they are: "red; position: fixed; inset: 0" would cover every other editor in the room. A CSS
# colour (hex, a name, rgb()/hsl()/oklch()/color-mix() ...) needs none of ; : { } ! quotes < > \.
USER_COLOUR_FIELDS = ("color", "colorLight")
CSS_COLOUR = re.compile(r"[#A-Za-z0-9(),.%/ +-]{1,64}")

# For the depth check: JSON strings (whose brackets do not nest; an unterminated one runs to the
# end, so that no match is retried from every later quote), everything but brackets, and
# innermost pairs of brackets.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_INNERMOST_PAIR = re.compile(r"\[\]|\{\}")
# Integer literals longer than this may be past a double's range (JavaScript reads Infinity).
_LONGEST_SURE_INTEGER = 300


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str  # JSON text, kept as received; "null" means the client left

    @property
    def removed(self) -> bool:
        return self.state == NULL_STATE


def decode_awareness(
    payload: bytes,
    *,
    max_state_bytes: int = MAX_STATE_BYTES,
    max_entries: int = MAX_ENTRIES_PER_MESSAGE,
) -> list[AwarenessEntry]:
    """Decode an awareness update whose every state passes `check_state`; raise `ProtocolError`
    (4400 malformed, 4413 a state over `max_state_bytes`, 4429 more than `max_entries`)."""
    reader = Reader(payload)
    count = reader.read_var_uint()
    if count > max_entries:
        raise ProtocolError(
            f"awareness message of {count} entries (at most {max_entries})", PRESENCE_FULL
        )
    entries = []
    for _ in range(count):
        client_id = reader.read_var_uint()
        clock = reader.read_var_uint()
        raw = reader.read_var_bytes()
        if len(raw) > max_state_bytes:
            raise ProtocolError(
                f"awareness state of {len(raw)} bytes (at most {max_state_bytes})",
                STATE_TOO_LARGE,
            )
        try:
            state = raw.decode() or NULL_STATE
        except UnicodeDecodeError as error:
            raise ProtocolError("string is not UTF-8") from error
        if state != NULL_STATE:
            check_state(state)
        entries.append(AwarenessEntry(client_id, clock, state))
    reader.expect_end()
    return entries


def encode_awareness(entries: list[AwarenessEntry]) -> bytes:
    parts = [write_var_uint(len(entries))]
    for entry in entries:
        state = entry.state.encode()
        # Copied once, by the join: a newcomer's greeting may hold megabytes of states.
        parts += (write_var_uint(entry.client_id), write_var_uint(entry.clock))
        parts += (write_var_uint(len(state)), state)
    return b"".join(parts)


def check_state(text: str, max_depth: int = MAX_STATE_DEPTH) -> None:
    """Raise `ProtocolError` (4400) unless `text` is JSON that `JSON.parse` reads as Python does,
    nested at most `max_depth` deep, with the fields editors read well formed."""
    _check_depth(text, max_depth)
    try:
        state = json.loads(
            text, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_finite_int
        )
    except ValueError as error:
        raise ProtocolError("awareness state is not JSON") from error
    if not isinstance(state, dict):
        return
    user = state.get("user")
    if isinstance(user, dict):
        _check_user(user)
    cursor = state.get("cursor")
    if isinstance(cursor, dict):
        anchor, head = cursor.get("anchor"), cursor.get("head")
        # y-codemirror.next reads neither unless both are set.
        if anchor is not None and head is not None:
            _check_relative_position(anchor, "cursor.anchor")
            _check_relative_position(head, "cursor.head")


def _check_depth(text: str, max_depth: int) -> None:
    """Refuse nesting deeper than `max_depth` before json.loads sees it, without recursing: the
    skeleton of brackets outside strings loses one level per pass."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # the common case: too few brackets to nest that deep
    skeleton = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    for _ in range(max_depth):
        if not skeleton:
            return
        shorter = _INNERMOST_PAIR.sub("", skeleton)
        if len(shorter) == len(skeleton):
            raise ProtocolError("awareness state is not JSON")  # brackets that do not pair
        skeleton = shorter
    if skeleton:
        raise ProtocolError(f"awareness state nested deeper than {max_depth}")


def _refuse_constant(name: str) -> object:
    # json.loads takes NaN and Infinity; JSON.parse throws, and takes every later entry with it.
    raise ProtocolError(f"awareness state holds {name}, which is not JSON")


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ProtocolError(f"awareness state holds a number out of range: {literal[:40]}")
    return value


def _finite_int(literal: str) -> int:
    value = int(literal)
    if len(literal) > _LONGEST_SURE_INTEGER:
        try:
            float(value)
        except OverflowError as error:
            raise ProtocolError("awareness state holds a number out of range") from error
    return value


def _check_user(user: dict[str, object]) -> None:
    for field in USER_COLOUR_FIELDS:
        colour = user.get(field)
        if colour is not None and not (isinstance(colour, str) and CSS_COLOUR.fullmatch(colour)):
            raise ProtocolError(f"awareness user.{field} is not a CSS colour")
    name = user.get("name")
    if name is not None and not (isinstance(name, str) and len(name) <= MAX_NAME_LENGTH):
        raise ProtocolError(f"awareness user.name is not a string of at most {MAX_NAME_LENGTH}")


def _check_relative_position(position: object, where: str) -> None:
    """What yjs's createAbsolutePositionFromRelativePosition reads without throwing, as
    y-codemirror.next calls it: on the parsed JSON itself (not createRelativePositionFromJSON)."""
    if not isinstance(position, dict) or "item" not in position:
        raise ProtocolError(f"awareness {where} is not a relative position")
    item, type_id, type_name = position["item"], position.get("type"), position.get("tname")
    if item is not None:
        _check_id(item, f"{where}.item")
    if type_id is not None:
        _check_id(type_id, f"{where}.type")
    if type_name is not None and not isinstance(type_name, str):
        raise ProtocolError(f"awareness {where}.tname is not a string")
    if item is None and type_name is None and (type_id is None or "tname" not in position):
        raise ProtocolError(f"awareness {where} names neither an item nor a type")
    assoc = position.get("assoc")
    if assoc is not None and not _is_integer(assoc, signed=True):
        raise ProtocolError(f"awareness {where}.assoc is not an integer")


def _check_id(value: object, where: str) -> None:
    if not (
        isinstance(value, dict)
        and _is_integer(value.get("client"))
        and _is_integer(value.get("clock"))
    ):
        raise ProtocolError(f"awareness {where} is not a Yjs ID (integer client and clock)")


def _is_integer(value: object, *, signed: bool = False) -> bool:
    # bool is an int in Python; JSON's true is no number to JavaScript.
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return (-MAX_VAR_UINT if signed else 0) <= value <= MAX_VAR_UINT
