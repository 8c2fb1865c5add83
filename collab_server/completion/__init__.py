"""Code completion: jedi for Python, keywords and identifiers for the other languages, an optional
AI continuation; computed in worker processes with a deadline (see `service.py`)."""

from collab_server.completion.job import Completions, Item
from collab_server.completion.service import (
    Admission,
    CompletionBusy,
    CompletionError,
    CompletionRequest,
    CompletionService,
    CompletionUnavailable,
)

__all__ = [
    "Admission",
    "CompletionBusy",
    "CompletionError",
    "CompletionRequest",
    "CompletionService",
    "CompletionUnavailable",
    "Completions",
    "Item",
]
