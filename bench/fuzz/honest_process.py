"""The honest clients in a process of their own, so that their latency measures the server and
not the fuzzer's busy event loop.

The child runs `HonestPair` and answers one JSON line per command read from stdin: `pause`
(stop editing; answers once the watcher has caught up), `resume`, `check` (compare the server's
text with the writer's now), `hold` (stop editing, answer at once: the server died),
`report` (the honest figures so far).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from bench.fuzz.honest import HonestPair
from bench.fuzz.server import NO_KEEPALIVE
from bench.fuzz.stats import Stats

COMMAND_SECONDS = 60.0


def honest_report(stats: Stats) -> dict[str, Any]:
    report: dict[str, Any] = stats.to_json(1.0, {})["honest"]
    return report


async def _child(args: argparse.Namespace) -> None:
    stats = Stats()
    pair = HonestPair(args.ws_url, args.http_url, args.room, stats, args.seed)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    async with (
        asyncio.TaskGroup() as tasks,
        httpx.AsyncClient(base_url=args.http_url, timeout=10, limits=NO_KEEPALIVE) as http,
    ):
        running = tasks.create_task(pair.run(args.rate, args.check_every))
        while line := await reader.readline():
            number, _, command = line.decode().strip().partition(" ")
            answer: dict[str, Any] = {"ok": True}
            if command == "pause":
                pair.pause()
                async with pair.checking:
                    answer["caught_up"] = await pair.wait_caught_up(10)
            elif command == "hold":  # the server is dead: nothing to catch up with
                pair.pause()
            elif command == "resume":
                pair.resume()
            elif command == "check":
                async with pair.checking:
                    await pair.check_text(http)
            elif command == "report":
                answer = honest_report(stats)
            answer["request"] = number  # a cancelled request's late answer is told apart
            print(json.dumps(answer), flush=True)
        running.cancel()


class HonestProcess:
    def __init__(
        self, ws_url: str, http_url: str, room: str, seed: int, rate: float, check_every: float
    ) -> None:
        self._arguments = [
            *("--ws-url", ws_url, "--http-url", http_url, "--room", room, "--seed", str(seed)),
            *("--rate", str(rate), "--check-every", str(check_every)),
        ]
        self._process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()
        self._requests = 0
        self.last_report: dict[str, Any] = {}

    async def start(self, log: Path) -> None:
        with log.open("ab") as stderr:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.fuzz.honest_process",
                *self._arguments,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
            )

    async def command(self, name: str) -> dict[str, Any]:
        """Send a command and wait for its answer ({"error": ...} if the child is gone)."""
        process = self._process
        if process is None or process.returncode is not None:
            return {"error": "the honest process is not running"}
        assert process.stdin is not None and process.stdout is not None
        async with self._lock:
            self._requests += 1
            number = str(self._requests)
            try:
                process.stdin.write(f"{number} {name}\n".encode())
                async with asyncio.timeout(COMMAND_SECONDS):
                    await process.stdin.drain()
                    while True:  # answers to requests cancelled earlier come first
                        line = await process.stdout.readline()
                        if not line or json.loads(line).get("request") == number:
                            break
            except (TimeoutError, ConnectionError) as error:
                return {"error": f"{name}: {type(error).__name__}"}
        if not line:
            return {"error": f"the honest process exited with {process.returncode}"}
        answer: dict[str, Any] = json.loads(line)
        answer.pop("request", None)
        if name == "report":
            self.last_report = answer
        return answer

    async def stop(self) -> None:
        if self._process is None or self._process.returncode is not None:
            return
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            async with asyncio.timeout(10):
                await self._process.wait()
        except TimeoutError:
            self._process.kill()
            await self._process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--ws-url", "--http-url", "--room"):
        parser.add_argument(name, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--check-every", type=float, default=5.0)
    asyncio.run(_child(parser.parse_args()))


if __name__ == "__main__":
    main()
