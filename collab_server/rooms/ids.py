"""What a room, and a shared text in it, may be called.

Stock clients put the room name into the URL path as it is (`ws://host/ws/` + name), and editors
name rooms after files (`team/app:src/main.py`; upstream's own test uses `test-@y/websocket`), so
a room id is any printable text of up to `MAX_ROOM_ID_CHARS` characters, `/` included. Refused is
only what cannot make that trip through a URL unchanged, or would be unsafe to show or log.
"""

from __future__ import annotations

import re
import unicodedata

from collab_server.rooms.document import META_MAP

MAX_ROOM_ID_CHARS = 256  # at most 1 KiB in UTF-8
# A URL ends its path at `?` and `#`, decodes `%`, and a browser reads `\` as `/`.
URL_CHANGES = frozenset("?#%\\")
# Right-to-left overrides and isolates make a name read differently from what it is.
BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# Control characters, surrogates, private use, and line or paragraph separators.
UNPRINTABLE = frozenset({"Cc", "Cs", "Co", "Zl", "Zp"})
TEXT_NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
DEFAULT_TEXT = "codemirror"  # the Y.Text name y-codemirror.next uses


def room_id_problem(room_id: str) -> str | None:
    """Why `room_id` cannot name a room (a sentence for the client), or None if it can."""
    if not room_id:
        return "a room name is empty"
    if len(room_id) > MAX_ROOM_ID_CHARS:
        return f"a room name is longer than {MAX_ROOM_ID_CHARS} characters"
    if room_id != room_id.strip():
        return "a room name starts or ends with white space"
    for char in room_id:
        if char in URL_CHANGES:
            return f"a room name holds {char!r}, which a URL cuts off or changes"
        if char in BIDI_CONTROLS or unicodedata.category(char) in UNPRINTABLE:
            return f"a room name holds the unprintable character U+{ord(char):04X}"
    # Browsers resolve "." and ".." segments in a page's URL, and drop nothing else.
    if any(segment in ("", ".", "..") for segment in room_id.split("/")):
        return "a room name has an empty, '.' or '..' segment between slashes"
    return None


def is_valid_room_id(room_id: str) -> bool:
    return room_id_problem(room_id) is None


def is_text_name(name: str) -> bool:
    """A shared text's name: 1 to 128 of [A-Za-z0-9._-], and not the `meta` map."""
    return TEXT_NAME_PATTERN.fullmatch(name) is not None and name != META_MAP
