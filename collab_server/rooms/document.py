"""Typed access to the shared types of a room's document, and the one guarded way to change it.

yrs is native code: besides refusing an update (ValueError when it cannot decode it,
RuntimeError when it cannot integrate it), it can panic on one, and pycrdt then
raises `PanicException`, a `BaseException` that `except Exception` does not catch. Every update
the server applies goes through `apply_update` here, which turns both into `CrdtFailure`.
"""

from __future__ import annotations

import secrets
from typing import cast

from pycrdt import Doc, Map, Text

Document = Doc[Text | Map[object]]

META_MAP = "meta"  # editors keep room settings here, e.g. meta.language
LANGUAGE_KEY = "language"

# The client id of the server's own edits (REST text and language writes): 32-bit as Yjs makes
# them (ypy-websocket re-encodes pycrdt's 53-bit default ids and sends the text back as new
# inserts), and one per process, so that the state vector grows by one entry a process, not one
# an edit. Each process has its own: two never write the same clock. Within one, a room
# serialises its own edits (`Room._own_edits`).
SERVER_CLIENT_ID = 1 + secrets.randbelow(2**32 - 1)


class CrdtFailure(Exception):
    """yrs refused an update, or panicked while applying it (the document may be damaged)."""

    def __init__(self, reason: str, *, panicked: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.panicked = panicked


def is_panic(error: BaseException) -> bool:
    """A Rust panic surfaced by pyo3 (not importable by name: it lives in `pyo3_runtime`)."""
    return type(error).__name__ == "PanicException" and not isinstance(error, Exception)


def apply_update(doc: Document, update: bytes) -> None:
    """Apply one update in its own transaction; raise `CrdtFailure` if yrs refuses or panics."""
    try:
        doc.apply_update(update)
    except (ValueError, RuntimeError) as error:  # it cannot decode it; it cannot integrate it
        raise CrdtFailure(f"the CRDT core refused the update: {error}", panicked=False) from error
    except BaseException as error:
        if not is_panic(error):
            raise
        raise CrdtFailure(f"the CRDT core panicked: {error}", panicked=True) from error


def new_document(state: bytes | None = None, *, client_id: int | None = None) -> Document:
    doc: Document = Doc() if client_id is None else Doc(client_id=client_id)
    if state is not None:
        apply_update(doc, state)
    return doc


def text_of(doc: Document, name: str) -> Text:
    # `get` creates the root type when missing and returns an instance of the class asked for.
    return cast(Text, doc.get(name, type=Text))


def meta_of(doc: Document) -> Map[object]:
    return cast(Map[object], doc.get(META_MAP, type=Map[object]))
