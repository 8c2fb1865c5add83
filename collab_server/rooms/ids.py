"""What a room, and a shared text in it, may be called."""

from __future__ import annotations

import re

from collab_server.rooms.document import META_MAP

ROOM_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")
DEFAULT_TEXT = "codemirror"  # the Y.Text name y-codemirror.next uses


def is_valid_room_id(room_id: str) -> bool:
    # "." and ".." would name the page's own directory in its URL: browsers normalise them away.
    return ROOM_ID_PATTERN.fullmatch(room_id) is not None and room_id not in (".", "..")


def is_text_name(name: str) -> bool:
    """A shared text's name: a room id's characters, and not the `meta` map."""
    return is_valid_room_id(name) and name != META_MAP
