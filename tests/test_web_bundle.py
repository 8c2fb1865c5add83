"""The committed web bundle (collab_server/static) is the build of the current web/ sources."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TypedDict

from collab_server.languages import LANGUAGES

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
STATIC = ROOT / "collab_server" / "static"
MANIFEST = STATIC / "manifest.json"
# What web/build.mjs digests: change one of these and the bundle must be rebuilt.
SOURCES = ("build.mjs", "package-lock.json", "package.json", "src")
STALE = "collab_server/static is stale against web/: run `make web` and commit the result"


class Manifest(TypedDict):
    note: str
    sources: str
    files: dict[str, str]


def _manifest() -> Manifest:
    manifest: Manifest = json.loads(MANIFEST.read_text())
    return manifest


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files_under(base: Path, root: str) -> list[str]:
    path = base / root
    if path.is_file():
        return [root]
    return [item.relative_to(base).as_posix() for item in path.rglob("*") if item.is_file()]


def sources_digest() -> str:
    """The digest web/build.mjs writes: sha256 over "path NUL sha256(content) LF", path-sorted."""
    files = sorted(file for root in SOURCES for file in _files_under(WEB, root))
    lines = "".join(f"{file}\0{_sha256(WEB / file)}\n" for file in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def test_bundle_is_built_from_the_current_sources() -> None:
    assert _manifest()["sources"] == sources_digest(), STALE


def test_bundle_holds_exactly_the_files_built() -> None:
    built = {
        path.relative_to(STATIC).as_posix(): _sha256(path)
        for path in STATIC.rglob("*")
        if path.is_file() and path != MANIFEST
    }
    assert built == _manifest()["files"], f"files in collab_server/static changed by hand? {STALE}"


def test_pages_load_the_scripts_of_this_build() -> None:
    version = _manifest()["sources"][:12]
    for page in ("index.html", "room.html"):
        html = (STATIC / page).read_text()
        assert f"?v={version}" in html, f"{page}: {STALE}"
        assert "__VERSION__" not in html


def test_the_editor_knows_every_language_of_the_server() -> None:
    source = (WEB / "src" / "languages.js").read_text()
    assert tuple(re.findall(r"\{ id: '([a-z]+)'", source)) == LANGUAGES
