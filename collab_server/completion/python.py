"""Python completion with jedi: stdlib and installed modules, attributes, names, keyword arguments.

Runs inside a completion worker (see `worker.py`), never in the server's event loop. Each document
gets a stable fictitious path, so parso's diff parser re-parses only what changed since the last
request for that document. A very long document is cut to a window of lines around the cursor
(plus its top-level imports) so that one request costs about the same whatever the file size.
"""

from __future__ import annotations

import hashlib
import re
import sys
import sysconfig
from pathlib import Path

import jedi
from jedi.api.classes import Completion
from parso.cache import parser_cache
from parso.utils import split_lines

from collab_server.completion.job import MAX_ITEMS, Completions, Item, ItemKind

WINDOW_THRESHOLD = 3000  # lines; longer documents are windowed
WINDOW_BEFORE = 2000  # lines kept before the cursor
WINDOW_AFTER = 200  # and after it
KEPT_DOCUMENTS = 16  # parsed room documents a worker keeps for incremental re-parsing

_ROOT = Path("/nonexistent/collab-completion")  # never on disk: jedi must not read neighbours
_TOP_LEVEL_IMPORT = re.compile(r"^(?:import|from)\s[^\n]*", re.MULTILINE)
_KINDS: dict[str, ItemKind] = {
    "module": "namespace",
    "class": "class",
    "instance": "variable",
    "function": "function",
    "param": "variable",
    "keyword": "keyword",
    "property": "property",
    "statement": "variable",
}


def _sys_path() -> list[str]:
    """The stdlib and site-packages: never the server's working directory or its files."""
    paths = sysconfig.get_paths()
    keys = ("stdlib", "platstdlib", "purelib", "platlib")
    dynload = [p for p in sys.path if p.endswith("lib-dynload")]
    return list(dict.fromkeys([*(paths[key] for key in keys), *dynload]))


class JediCompleter:
    """One worker's jedi: the environment and project are built once, then reused."""

    def __init__(self) -> None:
        self._environment = jedi.InterpreterEnvironment()
        self._project = jedi.Project(
            _ROOT, sys_path=_sys_path(), smart_sys_path=False, load_unsafe_extensions=False
        )

    def complete(self, text: str, index: int, key: str) -> Completions:
        path = _ROOT / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.py"
        source, line, column, windowed = _window(text, index)
        script = jedi.Script(
            source, path=path, project=self._project, environment=self._environment
        )
        found = script.complete(line, column)
        self._forget_old_documents()
        # Path completions would list the server's own directories: never offer them.
        found = [completion for completion in found if completion.type != "path"]
        prefix_length = found[0].get_completion_prefix_length() if found else 0
        start = index - prefix_length
        typed = text[start:index]
        after_dot = start > 0 and text[start - 1] == "."
        ranked = sorted(enumerate(found), key=lambda entry: _rank(entry[1], entry[0], typed, path))
        items = tuple(
            _item(completion, after_dot, local=completion.module_path == path)
            for _, completion in ranked[:MAX_ITEMS]
        )
        answer = Completions(start, index, items, provider="jedi")
        if windowed:
            answer = answer.degraded("jedi saw a window of the document")
        return answer

    @staticmethod
    def _forget_old_documents() -> None:
        """Keep parse trees of the most recently used room documents only."""
        for documents in parser_cache.values():
            ours = [path for path in documents if isinstance(path, Path) and path.parent == _ROOT]
            ours.sort(key=lambda path: documents[path].last_used, reverse=True)
            for path in ours[KEPT_DOCUMENTS:]:
                del documents[path]


def _window(text: str, index: int) -> tuple[str, int, int, bool]:
    """The source jedi sees and the cursor in it (1-based line, column in code points)."""
    before = split_lines(text[:index])
    line, column = len(before), len(before[-1])
    if text.count("\n") < WINDOW_THRESHOLD:
        return text, line, column, False
    lines = split_lines(text)
    first = max(0, line - 1 - WINDOW_BEFORE)
    last = min(len(lines), line + WINDOW_AFTER)
    header = [m.group() for m in _TOP_LEVEL_IMPORT.finditer("\n".join(lines[:first]))]
    window = [*header, *lines[first:last]]
    return "\n".join(window), line - first + len(header), column, True


def _rank(completion: Completion, order: int, typed: str, path: Path) -> tuple[int, ...]:
    name = completion.name
    private = 0 if typed.startswith("_") else 2 if name.startswith("__") else int(name[:1] == "_")
    return (
        0 if completion.type == "param" else 1,  # keyword arguments of the call first
        0 if name.startswith(typed) else 1,  # then what matches the case typed
        private,
        0 if completion.module_path == path else 1,  # then names of this document
        order,  # then jedi's (alphabetical) order
    )


def _item(completion: Completion, after_dot: bool, *, local: bool) -> Item:
    kind = _KINDS.get(completion.type, "text")
    name = completion.name
    if after_dot and kind == "function":
        kind = "method"
    elif after_dot and kind == "variable":
        kind = "property"
    elif kind == "variable" and completion.type == "statement" and name.isupper() and len(name) > 1:
        kind = "constant"
    label = completion.name_with_symbols
    detail = None if local or kind == "keyword" else completion.module_name
    return Item(label, kind, label, detail)
