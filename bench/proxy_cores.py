"""Many cores: the relay load against one server process, and against several behind HAProxy
(deploy/haproxy.cfg as shipped, rooms routed by id), interleaved step by step in one run.

Setups (completion off; each PostgreSQL one on a scratch database of its own):

- `one`: one server process on PostgreSQL, the clients straight to it, no Redis (how one process
  runs);
- `proxy-one`: HAProxy in front of one process on PostgreSQL + Redis: what the proxy and the bus
  cost, with no second process to gain from;
- `proxy-two`: HAProxy in front of two processes on PostgreSQL + Redis (README.md's recipe, in
  which a room survives its process dying);
- `one-memory` and `proxy-two-memory`: the same without PostgreSQL and Redis, each process with
  a memory store of its own (correct only because routing keeps each room in one process, and
  while no process dies): the servers' own scaling, with no database taking CPU from them.

The load is bench/loadgen.mjs (the real Yjs protocol, 10 rooms x 10 clients by default) at
rising rates, every setup taking its turn at every step as in bench/run_relay.py. Its CPU figure
adds up the setup's processes (servers and HAProxy; PostgreSQL and Redis count as the machine's).
Each step's ten rooms are named so that they split evenly over the backends (asked of the proxy,
whose hash decides), and the run also reports how a thousand random names split. A step not
sustained while other work on the machine (not the setup, the generator, PostgreSQL or Redis)
took over 0.2 cores is run once more and the better attempt kept.

    .venv/bin/python -m bench.proxy_cores          # about 5 minutes
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from bench.pgdb import scratch_database_sync
from bench.ports import free_port
from bench.relay_report import (
    CAPACITY_P99_MS,
    SUSTAINED_P99_MS,
    Run,
    best,
    delivery_problems,
    report_header,
    rerender,
    sustained,
)
from bench.run_relay import (
    FAILED_STEPS_TO_STOP,
    LOADGEN,
    ROOT,
    Server,
    better,
    machine_load,
    progress,
    running,
    versions,
)

CONFIG = ROOT / "deploy" / "haproxy.cfg"
SERVED_BY = "X-Collab-Server"  # the header the config adds: which backend answered
REDIS_URL = "redis://127.0.0.1:6379/0"
WARM_UP_RATE = 5_000  # each setup's first, unrecorded step
LADDER = [10_000, 15_000, 20_000, 25_000, 30_000, 37_500, 45_000, 55_000, 65_000, 80_000]


@dataclass(frozen=True)
class Recipe:
    label: str
    processes: int
    proxy: bool
    postgres: bool  # else the memory store
    redis: bool
    against: str | None = None  # the one-process setup on the same store, for the ratio


SETUPS = {
    "one": Recipe("one process, PostgreSQL, direct", 1, False, True, False),
    "proxy-one": Recipe("HAProxy + one process, PostgreSQL + Redis", 1, True, True, True, "one"),
    "proxy-two": Recipe("HAProxy + two processes, PostgreSQL + Redis", 2, True, True, True, "one"),
    "one-memory": Recipe("one process, memory store, direct", 1, False, False, False),
    "proxy-two-memory": Recipe(
        "HAProxy + two processes, memory store", 2, True, False, False, "one-memory"
    ),
}


@dataclass
class Setup:
    name: str
    url_prefix: str  # rooms are at url_prefix + room name
    http_url: str  # where REST goes: the proxy, or the one process
    pids: list[int]  # servers first, then HAProxy
    backends: int  # 0: no proxy


def server(name: str, store: str, redis: bool) -> Server:
    port = free_port()
    env = {
        "COLLAB_LOG_LEVEL": "warning",
        "COLLAB_CLIENT_MESSAGES_PER_SECOND": "0",  # each load client sends thousands a second
        "COLLAB_COMPLETION_WORKERS": "0",
        "COLLAB_STORE_URL": store,
    }
    if redis:
        env["COLLAB_REDIS_URL"] = REDIS_URL
    command = [sys.executable, "-m", "collab_server", "serve", "--port", str(port)]
    return Server(name, name, command, env, f"ws://127.0.0.1:{port}/ws/", "/healthz", port)


def haproxy(name: str, backends: Sequence[Server]) -> Server:
    port = free_port()
    env = {"PROXY_BIND": f"127.0.0.1:{port}"}
    for index, backend in enumerate(backends, start=1):
        env[f"PROXY_BACKEND_{index}"] = f"127.0.0.1:{backend.port}"
    command = [haproxy_binary(), "-f", str(CONFIG), "-db"]
    return Server(name, name, command, env, f"ws://127.0.0.1:{port}/ws/", "/healthz", port)


def haproxy_binary() -> str:
    found = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(found).exists():
        raise SystemExit("haproxy not found: `make proxy-deps`")
    return found


@contextmanager
def started(name: str, log_dir: Path) -> Iterator[Setup]:
    """The setup `name`, running until the block ends."""
    recipe = SETUPS[name]
    with ExitStack() as stack:
        store = stack.enter_context(scratch_database_sync()) if recipe.postgres else "memory://"
        backends = [
            stack.enter_context(running(server(f"{name}-s{index}", store, recipe.redis), log_dir))
            for index in range(1, recipe.processes + 1)
        ]
        if not recipe.proxy:
            (alone,) = backends
            yield Setup(name, alone.url_prefix, f"http://127.0.0.1:{alone.port}", [alone.pid], 0)
            return
        proxy = stack.enter_context(running(haproxy(f"{name}-haproxy", backends), log_dir))
        http_url = f"http://127.0.0.1:{proxy.port}"
        wait_all_backends(http_url, recipe.processes)
        pids = [backend.pid for backend in backends] + [proxy.pid]
        yield Setup(name, proxy.url_prefix, http_url, pids, recipe.processes)


def served_by(http_url: str, path: str) -> str:
    """The backend the proxy sends `path` to (a 404 for a room not made yet answers too)."""
    try:
        with urllib.request.urlopen(http_url + path, timeout=5) as response:
            return str(response.headers[SERVED_BY])
    except urllib.error.HTTPError as error:
        return str(error.headers[SERVED_BY])


def wait_all_backends(http_url: str, count: int) -> None:
    """Until round-robin requests through the proxy have reached every backend."""
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while len(seen) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {sorted(seen)} of {count} backends answer through the proxy")
        seen.add(served_by(http_url, "/healthz"))


def room_names(prefix: str, rooms: int) -> list[str]:
    return [f"{prefix}-r{index}" for index in range(rooms)]  # as bench/loadgen.mjs names them


def split(setup: Setup, prefix: str, rooms: int) -> Counter[str]:
    """How many of the step's rooms each backend gets."""
    if setup.backends < 2:
        return Counter({"s1": rooms})
    return Counter(
        served_by(setup.http_url, f"/api/rooms/{quote(room, safe='')}")
        for room in room_names(prefix, rooms)
    )


def even_prefix(setup: Setup, base: str, rooms: int) -> tuple[str, Counter[str]]:
    """A prefix for the step's room names whose rooms split as evenly as can be."""
    fair = -(-rooms // max(setup.backends, 1))  # the most one backend should get
    for attempt in range(200):
        prefix = f"{base}-{attempt}"
        shares = split(setup, prefix, rooms)
        if setup.backends < 2 or max(shares.values()) <= fair:
            return prefix, shares
    raise RuntimeError(f"no even split of {rooms} rooms found for {setup.name}")


def random_split(setup: Setup, names: int) -> Counter[str]:
    """How `names` random room names split over the backends (the hash ring's own balance)."""
    tag = secrets.token_hex(3)
    return Counter(
        served_by(setup.http_url, f"/api/rooms/rand-{tag}-{index}") for index in range(names)
    )


# Processes of the machine's PostgreSQL and Redis: the setups' own load, not others' work.
SHARED_SERVICES = ("postgres", "redis-server")
# A step not sustained while other work on the machine took more than this (cores) is run once
# more and the better attempt kept: noise only ever makes a step worse.
NOISY_FOREIGN_LOAD = 0.2
CLK_TCK = 100  # USER_HZ


def process_cpu() -> dict[int, tuple[str, float]]:
    """Every user process's command name and CPU seconds so far (kernel threads left out)."""
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[1] == "2" or entry.name == "2":  # kthreadd and its children
            continue
        found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return found


def foreign_cores(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    ours: set[int],
    seconds: float,
) -> float:
    """Cores that processes other than ours, PostgreSQL and Redis used between two samples."""
    used = 0.0
    for pid, (name, cpu) in after.items():
        if pid in ours or name.startswith(SHARED_SERVICES):
            continue
        used += cpu - before.get(pid, (name, 0.0))[1]
    return used / seconds


def run_step(
    setup: Setup, rooms: int, clients: int, offered: int, args: argparse.Namespace, prefix: str
) -> dict[str, Any]:
    rate = offered / (rooms * clients * (clients - 1))
    command = [
        "node",
        str(LOADGEN),
        f"--url={setup.url_prefix}",
        f"--rooms={rooms}",
        f"--clients={clients}",
        f"--rate={rate:.4f}",
        f"--warmup={args.warmup}",
        f"--duration={args.duration}",
        f"--drain={args.drain}",
        f"--server-pid={','.join(str(pid) for pid in setup.pids)}",
        f"--prefix={prefix}",
    ]
    before, started_at = process_cpu(), time.monotonic()
    with subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as loadgen:
        stdout, stderr = loadgen.communicate(timeout=120)
        ours = {*setup.pids, loadgen.pid, os.getpid()}
        foreign = foreign_cores(before, process_cpu(), ours, time.monotonic() - started_at)
    if loadgen.returncode != 0:
        lines = stderr.strip().splitlines()
        first = next((line for line in lines if line.startswith("loadgen:")), "failed")
        return {"error": first, "foreign_cores": foreign}
    result: dict[str, Any] = json.loads(stdout)
    result["foreign_cores"] = foreign
    return result


def haproxy_version() -> str:
    first = subprocess.run(
        [haproxy_binary(), "-v"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return first[0] if first else "unknown"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.proxy_cores",
        description="One server process against several behind HAProxy, under the relay load.",
    )
    parser.add_argument("--setups", default=",".join(SETUPS), help="comma-separated")
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--clients", type=int, default=10, help="per room")
    parser.add_argument("--ladder", help="offered deliveries/s, comma-separated")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--drain", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-proxy.md")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results-proxy.json")
    parser.add_argument("--note", action="append", default=[], help="a line for the notes")
    parser.add_argument(
        "--report-only", action="store_true", help="re-render --out from --json, run nothing"
    )
    args = parser.parse_args(argv)
    args.ladder = [int(v) for v in args.ladder.split(",")] if args.ladder else LADDER
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report_only:
        rerender(args.json, args.out, args.note, render)
        return
    arguments = argv if argv is not None else sys.argv[1:]
    names = args.setups.split(",")
    run = Run(
        command=" ".join([".venv/bin/python -m bench.proxy_cores", *arguments]),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        machine={**versions(), "haproxy": haproxy_version()},
        pinned=False,
        warmup=args.warmup,
        duration=args.duration,
        notes=list(args.note),
        load_before=machine_load(),
        servers={name: SETUPS[name].label for name in names},
    )
    scenario = f"{args.rooms}x{args.clients}"
    started_at = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="collab-proxy-") as scratch, ExitStack() as stack:
        setups = [stack.enter_context(started(name, Path(scratch))) for name in names]
        for setup in setups:
            if setup.backends > 1:
                shares = random_split(setup, 1000)
                run.notes.append(
                    f"1,000 random room names through {setup.name}: "
                    + ", ".join(f"{name} {count}" for name, count in sorted(shares.items()))
                )
        for setup in setups:  # a fresh process's first rooms and connections are slower
            warm = argparse.Namespace(warmup=1.0, duration=1.0, drain=args.drain)
            prefix, _ = even_prefix(setup, f"warm-{setup.name}-{secrets.token_hex(2)}", args.rooms)
            result = run_step(setup, args.rooms, args.clients, WARM_UP_RATE, warm, prefix)
            print(f"{progress(result, scenario, WARM_UP_RATE, setup.name)} (warm-up, not kept)")
        stopped: set[str] = set()
        failed = dict.fromkeys(names, 0)
        for step, offered in enumerate(args.ladder):
            turn = [setup for setup in setups if setup.name not in stopped]
            if not turn:
                break
            shift = step % len(turn)
            for setup in turn[shift:] + turn[:shift]:
                base = f"{scenario}-{offered}-{setup.name}-{secrets.token_hex(2)}"
                prefix, shares = even_prefix(setup, base, args.rooms)
                result = run_step(setup, args.rooms, args.clients, offered, args, prefix)
                if not sustained(result) and result["foreign_cores"] > NOISY_FOREIGN_LOAD:
                    print(progress(result, scenario, offered, setup.name) + "; noisy, again")
                    again = run_step(setup, args.rooms, args.clients, offered, args, prefix + "b")
                    print(progress(again, scenario, offered, setup.name) + "; the better is kept")
                    result = better(result, again)
                result.update(
                    scenario=scenario,
                    server=setup.name,
                    offered=offered,
                    rooms_split=dict(sorted(shares.items())),
                )
                run.steps.append(result)
                print(
                    f"{progress(result, scenario, offered, setup.name)}"
                    f"  foreign {result['foreign_cores']:.2f} cores",
                    flush=True,
                )
                failed[setup.name] = 0 if sustained(result) else failed[setup.name] + 1
                if failed[setup.name] >= FAILED_STEPS_TO_STOP:
                    stopped.add(setup.name)
    run.seconds = time.monotonic() - started_at
    run.load_after = machine_load()
    args.json.write_text(json.dumps(run.to_json(), indent=1) + "\n")
    args.out.write_text(render(run))
    print(f"wrote {args.out} and {args.json} in {run.seconds:.0f} s")


# -- the report -----------------------------------------------------------------------------------


def _per_delivery(cores: float | None, step: dict[str, Any]) -> str:
    if cores is None or not step.get("delivered_per_s"):
        return "-"
    return f"{cores * 1e6 / step['delivered_per_s']:.1f}"


def _ms(value: float | str | None) -> str:
    if value is None:
        return "-"
    if value == "inf":
        return "lost"
    return f"{float(value):.1f}"


def _summary(run: Run, p99_limit: float) -> list[str]:
    lines = [
        "| setup | highest step held | delivered/s | p99 ms | setup CPU (cores) "
        "| setup µs/delivery | machine µs/delivery | vs one process, same store |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    scenario = run.steps[0]["scenario"] if run.steps else ""
    for name, label in run.servers.items():
        top = best(run.steps, name, scenario, p99_limit)
        if top is None:
            lines.append(f"| {label} | none | | | | | | |")
            continue
        against = SETUPS[name].against
        alone = best(run.steps, against, scenario, p99_limit) if against in run.servers else None
        ratio = f"{top['delivered_per_s'] / alone['delivered_per_s']:.2f}x" if alone else "-"
        lines.append(
            f"| {label} | {top['offered']:,} | {top['delivered_per_s']:,.0f}"
            f" | {_ms(top['p99_ms'])} | {top['server_cpu']:.2f}"
            f" | {_per_delivery(top['server_cpu'], top)}"
            f" | {_per_delivery(top['machine_cpu'], top)} | {ratio} |"
        )
    return lines


def _status(step: dict[str, Any]) -> str:
    problems = delivery_problems(step)
    status = ", ".join(problems) or ("ok" if sustained(step) else "over")
    for attempt in step.get("attempts", []):
        status += f"; best of 2 (the other: p99 {_ms(attempt['p99_ms'])} ms)"
    return status


def _steps(run: Run) -> list[str]:
    lines = [
        "| offered/s | setup | rooms per backend | delivered/s | p50 ms | p99 ms | max ms"
        " | CPU: servers, HAProxy | µs/delivery | machine busy (cores) | generator"
        " | others' work (cores) | status |",
        "|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|",
    ]
    for step in run.steps:
        name = run.servers.get(step["server"], step["server"])
        shares = "/".join(str(count) for count in step.get("rooms_split", {}).values())
        if "error" in step:
            lines.append(
                f"| {step['offered']:,} | {name} | {shares} | | | | | | | | | | {step['error']} |"
            )
            continue
        each = [f"{100 * cpu:.0f}%" for cpu in step.get("server_cpu_each") or []]
        if SETUPS[step["server"]].proxy and each:
            each = [" + ".join(each[:-1]), each[-1]]
        lines.append(
            f"| {step['offered']:,} | {name} | {shares} | {step['delivered_per_s']:,.0f}"
            f" | {_ms(step['p50_ms'])} | {_ms(step['p99_ms'])} | {_ms(step['max_ms'])}"
            f" | {', '.join(each)} | {_per_delivery(step['server_cpu'], step)}"
            f" | {step['machine_cpu']:.2f} | {100 * step['gen_cpu']:.0f}%"
            f" | {step.get('foreign_cores', 0):.2f} | {_status(step)} |"
        )
    return lines


def render(run: Run) -> str:
    machine = run.machine
    load = [
        f"- Machine load {label} ({data['at']}): load average {' '.join(data['loadavg'])}"
        for label, data in (("before", run.load_before), ("after", run.load_after))
        if data
    ]
    out = [
        *report_header(run, "Many cores: one server process against several behind HAProxy"),
        f"- Machine: {machine['cpu']}, {machine['memory_gib']} GiB, Linux {machine['kernel']};"
        " nothing pinned: the load generator, HAProxy, the servers, PostgreSQL and Redis share"
        " the cores.",
        f"- Python {machine['python']}, pycrdt {machine['pycrdt']}, uvicorn {machine['uvicorn']};"
        f" {machine['haproxy']} with deploy/haproxy.cfg as shipped; Node {machine['node']},"
        f" yjs {machine['yjs']}.",
        f"- Load: bench/loadgen.mjs, {run.steps[0]['scenario'] if run.steps else '-'} (rooms x"
        f" clients), every setup in turn at each step; {run.warmup:g} s warm-up,"
        f" {run.duration:g} s measured; before the first, each setup ran one unrecorded step at"
        f" {WARM_UP_RATE:,}/s (a fresh process's first rooms and connections are slower).",
        "- *Setup CPU* adds up the setup's server processes and HAProxy; *machine* is every"
        " core's busy time (the generator, PostgreSQL and Redis too), per delivery; *others'"
        " work* is what processes other than these used during the step (other sessions on the"
        f" machine). A step not sustained while others' work took over {NOISY_FOREIGN_LOAD:g}"
        " cores was run again and the better attempt kept.",
        *load,
        "",
        "## Summary",
        "",
        f"Highest step up to which each setup sustained every step (p99 < {SUSTAINED_P99_MS:g}"
        " ms, at least 95 % delivered, nothing closed or lost):",
        "",
        *_summary(run, SUSTAINED_P99_MS),
        "",
        f"The same with p99 < {CAPACITY_P99_MS / 1000:g} s (throughput capacity):",
        "",
        *_summary(run, CAPACITY_P99_MS),
        "",
        *(["## Notes", "", *[f"- {note}" for note in run.notes], ""] if run.notes else []),
        "## Every step",
        "",
        *_steps(run),
        "",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    main()
