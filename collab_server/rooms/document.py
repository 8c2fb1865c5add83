"""Typed access to the shared types of a room's document."""

from __future__ import annotations

from typing import cast

from pycrdt import Doc, Map, Text

Document = Doc[Text | Map[object]]

META_MAP = "meta"  # editors keep room settings here, e.g. meta.language
LANGUAGE_KEY = "language"


def new_document(state: bytes | None = None) -> Document:
    doc: Document = Doc()
    if state is not None:
        doc.apply_update(state)
    return doc


def text_of(doc: Document, name: str) -> Text:
    # `get` creates the root type when missing and returns an instance of the class asked for.
    return cast(Text, doc.get(name, type=Text))


def meta_of(doc: Document) -> Map[object]:
    return cast(Map[object], doc.get(META_MAP, type=Map[object]))
