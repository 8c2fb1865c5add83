"""Fuzz a real server process with structure-aware Yjs updates and y-protocols frames.

    .venv/bin/python -m bench.fuzz.run --frames 1000000 --seed 1 [--store sqlite|memory]

Starts `python -m collab_server serve` (SQLite in the results directory by default, completion
off, no per-client rate limit), sends fuzz frames over several WebSocket connections (and some
updates with `POST /api/rooms/{room}/update`) while two honest pycrdt clients edit a room of
their own, and reports frames sent, close codes and HTTP statuses, crashes (with the frames that
preceded each and a minimised reproducer), rooms that kill the server when they load, rooms that
differ after a graceful restart, the server's peak and final RSS, the honest edit latency and
any error in the honest room. Everything goes to `report.json` in the results directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fuzz.campaign import Campaign, Options
from bench.ports import free_port


def parse() -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--connections", type=int, default=4, help="fuzzing WebSockets at once")
    parser.add_argument("--rooms", type=int, default=2, help="fuzz rooms in use at once")
    parser.add_argument("--room-frames", type=int, default=3000, help="frames before a new room")
    parser.add_argument(
        "--restart-every", type=int, default=50_000, help="frames between graceful restarts"
    )
    parser.add_argument("--honest-rate", type=float, default=20.0, help="honest edits per second")
    parser.add_argument("--check-every", type=float, default=5.0, help="seconds between checks")
    parser.add_argument("--huge", type=float, default=0.002, help="share of crash-sized shapes")
    parser.add_argument(
        "--disable",
        default="",
        help="comma-separated generators to leave out: categories (valid, mutated, bytes, "
        "crafted, protocol), crafted shapes (deep_any, deep_types, many_items, ...) or "
        "mutations (wrong_parent, odd_clock, ...)",
    )
    parser.add_argument("--weight", action="append", default=[], help="CATEGORY=WEIGHT")
    parser.add_argument("--no-minimise", action="store_true", help="do not shrink crashes")
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    parser.add_argument(
        "--server-source",
        type=Path,
        default=None,
        help="run the server from this checkout (e.g. `git archive COMMIT | tar -x -C DIR`); "
        "default: the installed one",
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.gettempdir()) / "collab-fuzz" / (
        time.strftime("%Y%m%d-%H%M%S") + f"-seed{args.seed}"
    )
    weights = {}
    for item in args.weight:
        name, _, value = item.partition("=")
        weights[name] = float(value)
    return Options(
        frames=args.frames,
        seed=args.seed,
        store=args.store,
        out=out,
        connections=args.connections,
        rooms=args.rooms,
        room_frames=args.room_frames,
        restart_every=args.restart_every,
        honest_rate=args.honest_rate,
        check_every=args.check_every,
        minimise=not args.no_minimise,
        huge=args.huge,
        disabled=frozenset(name for name in args.disable.split(",") if name),
        weights=weights,
        max_seconds=args.max_seconds,
        port=free_port(),
        server_source=args.server_source.resolve() if args.server_source else None,
    )


def server_env(options: Options) -> dict[str, str]:
    store = (
        "memory://" if options.store == "memory" else f"sqlite:///{options.out.resolve()}/fuzz.db"
    )
    return {
        "COLLAB_STORE_URL": store,
        "COLLAB_COMPLETION_WORKERS": "0",
        "COLLAB_CLIENT_MESSAGES_PER_SECOND": "0",
        "COLLAB_LOG_LEVEL": "warning",
        "RUST_BACKTRACE": "1",  # a panic's stderr names the yrs source line
        "PYTHONFAULTHANDLER": "1",  # a stalled server aborted by the fuzzer shows its stack
    }


def summary_lines(report: dict[str, Any]) -> list[str]:
    honest = report["honest"]
    lines = [
        f"frames sent: {report['frames_sent']} in {report['elapsed_seconds']} s "
        f"({report['frames_per_second']}/s), {report['connections']} connections",
        f"by category: {report['frames_by_category']}",
        f"by transport: {report['frames_by_via']}",
        f"close codes: {report['close_codes']}",
        f"HTTP statuses: {report['http_statuses']}",
        f"crashes: {len(report['crashes'])} "
        + "; ".join(f"{c['exit']} at frame {c['frames_sent']}" for c in report["crashes"][:10]),
        f"crash signatures: {report['crash_signatures']}",
        f"rooms that kill the server when loaded: {len(report['poisoned_rooms'])}",
        f"restarts: {len(report['restarts'])}, rooms compared "
        f"{report['rooms_compared_after_restart']}, differing "
        f"{len(report['rooms_differing_after_restart'])}",
        f"server RSS: peak {report['server_rss_peak_mib']} MiB, final "
        f"{report['server_rss_final_mib']} MiB; fuzzer peak {report['fuzzer_peak_rss_mib']} MiB",
        f"honest: {honest['edits']} edits, latency p50 {honest['latency_p50_ms']} ms, p99 "
        f"{honest['latency_p99_ms']} ms, max {honest['latency_max_ms']} ms; "
        f"{honest['checks_against_rest_text']} text checks; errors {honest['errors']}",
        f"server output anomalies: {report['server_output_anomalies']}",
        f"server log lines by kind: {report['server_log_kinds']}",
    ]
    return lines


async def _run(campaign: Campaign) -> dict[str, Any]:
    """The campaign, cancelled on SIGTERM so that its clean-up (the server) still runs."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await campaign.run()


def main() -> None:
    options = parse()
    print(f"results in {options.out}", flush=True)
    campaign = Campaign(options, server_env(options))
    report = asyncio.run(_run(campaign))
    for line in summary_lines(report):
        print(line)
    print(f"report: {options.out / 'report.json'}")
    print(json.dumps(report["reproducers"], indent=1))


if __name__ == "__main__":
    main()
