"""Benchmark: how soon after a start Python completion answers in full (from jedi, not the
generic fallback), with jedi's cache kept across restarts and without.

    .venv/bin/python -m bench.completion_start [--rounds 3]

Each start runs `python -m collab_server serve` (two completion workers, memory store) and, from
the moment the process is spawned, makes a Python room holding a small module and asks for a
completion at its end (`os.pa`, where jedi offers `path`) every 100 ms until jedi answers it in
full; the time from the spawn to that answer is reported. Cases, `--rounds` starts each:

- `no cache kept`: `COLLAB_COMPLETION_CACHE_DIR=none`, each worker in a temporary directory (as
  before the cache was kept);
- `first start`: an empty cache directory (a new machine);
- `restart`: the directory the previous start left (stopped with SIGTERM, as a supervisor does);
- `after kill -9`: the previous start killed with SIGKILL (its workers still leave cleanly:
  the kernel's parent-death signal reaches them as SIGTERM).

Not a test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench.ports import free_port
from tests.server_process import serve_command

MODULE = (
    "import os\nimport json\n\n\ndef load(path):\n"
    "    with open(path) as f:\n        return json.load(f)\n\n\nos.pa"
)
ASK_EVERY = 0.1
GIVE_UP = 60.0


async def first_full_answer(cache_dir: str, *, kill: bool = False) -> float:
    """Seconds from spawning a server to its first full jedi answer; then stop it (SIGTERM, or
    SIGKILL with `kill`)."""
    port = free_port()
    env = {
        **os.environ,
        "COLLAB_STORE_URL": "memory://",
        "COLLAB_LOG_LEVEL": "warning",
        "COLLAB_COMPLETION_WORKERS": "2",
        "COLLAB_COMPLETION_CACHE_DIR": cache_dir,
    }
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*serve_command(port), env=env)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            room = False
            while time.perf_counter() - started < GIVE_UP:
                try:
                    if not room:
                        made = await http.post(
                            "/api/rooms", json={"id": "py", "language": "python"}
                        )
                        await http.put("/api/rooms/py/text", content=MODULE.encode())
                        room = made.status_code in (201, 409)
                    answer = await http.post("/api/rooms/py/complete", json={"offset": len(MODULE)})
                    found = answer.json() if answer.status_code == 200 else {}
                    labels = [item["label"] for item in found.get("items", [])]
                    if (
                        found.get("provider") == "jedi"
                        and not found["partial"]
                        and "path" in labels
                    ):
                        return time.perf_counter() - started
                except httpx.TransportError:
                    pass  # not listening yet
                await asyncio.sleep(ASK_EVERY)
            raise TimeoutError(f"no full answer within {GIVE_UP} s")
    finally:
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        await process.wait()
        await asyncio.sleep(1)  # the workers leave with it (parent-death signal)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    results: dict[str, list[float]] = {}
    for _ in range(arguments.rounds):
        kept = tempfile.mkdtemp(prefix="bench-jedi-cache-")
        results.setdefault("no cache kept", []).append(await first_full_answer("none"))
        results.setdefault("first start", []).append(await first_full_answer(kept))
        results.setdefault("restart", []).append(await first_full_answer(kept, kill=True))
        results.setdefault("after kill -9", []).append(await first_full_answer(kept))
        results.setdefault("restart", []).append(await first_full_answer(kept))
    print(
        f"First full Python answer after the server process is spawned ({arguments.rounds} rounds):"
    )
    for case, seconds in results.items():
        values = ", ".join(f"{value:.1f}" for value in seconds)
        print(f"- {case}: median {statistics.median(seconds):.1f} s ({values})")
    print(f"(cache directory sizes: {', '.join(_sizes())})")


def _sizes() -> list[str]:
    roots = sorted(Path(tempfile.gettempdir()).glob("bench-jedi-cache-*"))
    return [
        f"{sum(p.stat().st_size for p in root.rglob('*') if p.is_file()) / 1e6:.1f} MB"
        for root in roots[-1:]
    ]


if __name__ == "__main__":
    asyncio.run(main())
