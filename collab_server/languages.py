"""The languages a room can be in: the ids kept in the document's `meta` map."""

from __future__ import annotations

from typing import Literal, get_args

Language = Literal[
    "python",
    "javascript",
    "typescript",
    "go",
    "rust",
    "java",
    "c",
    "cpp",
    "html",
    "css",
    "markdown",
    "sql",
    "plaintext",
]

LANGUAGES: tuple[str, ...] = get_args(Language)
DEFAULT_LANGUAGE: Language = "plaintext"
