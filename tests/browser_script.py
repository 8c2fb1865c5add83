"""Running a tests/browser/*.e2e.mjs script (playwright-core driving Debian's Chromium)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")


async def require_browser() -> None:
    """Fail (never skip) when Chromium or playwright-core is missing: `make test` installs them."""
    if not await anyio.Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser-deps` installs Debian's chromium")
    playwright = anyio.Path(ROOT / "node_modules" / "playwright-core")
    if shutil.which("node") is None or not await playwright.exists():
        pytest.fail("node and playwright-core are needed: `npm ci` at the repository root")


async def run_browser_script(
    script: Path, artifacts: Path, *arguments: str, seconds: float
) -> dict[str, Any]:
    """Run `script BASE_URL-etc ARTIFACTS` with fresh `artifacts`; the result it reports last."""
    await anyio.to_thread.run_sync(lambda: shutil.rmtree(artifacts, ignore_errors=True))
    process = await asyncio.create_subprocess_exec(
        "node",
        str(script),
        *arguments,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        with anyio.fail_after(seconds):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:  # timed out: playwright closes Chromium on SIGTERM
            process.terminate()
            with anyio.move_on_after(10, shield=True):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
    output = stdout.decode()
    assert process.returncode == 0, f"browser script failed:\n{output}\n{stderr.decode()}"
    reports = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    result: dict[str, Any] = reports[-1]["result"]
    return result
