"""The README's configuration table lists every setting with its real default."""

from __future__ import annotations

import re
from pathlib import Path

from collab_server.settings import Settings

README = Path(__file__).parent.parent / "README.md"
ROW = re.compile(r"^\| `COLLAB_([A-Z0-9_]+)` \| (.+?) \| .+ \|$")


def _documented() -> dict[str, str]:
    rows = (ROW.match(line) for line in README.read_text().splitlines())
    return {match[1].lower(): match[2] for match in rows if match}


def _shown(value: object) -> str:
    if value is None:
        return "*(unset)*"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def test_every_setting_is_documented_with_its_default() -> None:
    defaults = {name: field.default for name, field in Settings.model_fields.items()}
    documented = _documented()
    assert sorted(documented) == sorted(defaults)
    for name, default in defaults.items():
        assert documented[name] == _shown(default), name
