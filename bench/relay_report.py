"""The relay benchmark's results: what one run holds, and its markdown report."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# A step is sustained when nearly everything offered arrives, in time, with nothing lost.
SUSTAINED_P99_MS = 100.0
# A looser bar for throughput capacity, which brief stalls of a shared machine disturb less.
CAPACITY_P99_MS = 1000.0
SUSTAINED_DELIVERED_SHARE = 0.95
# The generator counts as a possible bottleneck past this share of its core.
GENERATOR_BUSY = 0.8
REFERENCE = "reference"


@dataclass(frozen=True)
class Scenario:
    name: str
    rooms: int
    clients: int

    @property
    def title(self) -> str:
        rooms = "room" if self.rooms == 1 else "rooms"
        return f"{self.rooms} {rooms} x {self.clients} clients"


@dataclass
class Run:
    command: str
    started: str
    machine: dict[str, str]
    pinned: bool
    warmup: float
    duration: float
    notes: list[str] = field(default_factory=list)
    load_before: dict[str, Any] = field(default_factory=dict)
    load_after: dict[str, Any] = field(default_factory=dict)
    servers: dict[str, str] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        return cls(**data)


def sustained(step: dict[str, Any], p99_limit: float = SUSTAINED_P99_MS) -> bool:
    if "error" in step:
        return False
    p99 = step["p99_ms"]
    return (
        p99 != "inf"
        and p99 is not None
        and p99 < p99_limit
        and step["delivered_per_s"] >= SUSTAINED_DELIVERED_SHARE * step["offered_per_s"]
        and step["closed"] == 0
        and step["gaps"] == 0
        and not step["server_missing"]
    )


def best(
    steps: list[dict[str, Any]], server: str, scenario: str, p99_limit: float = SUSTAINED_P99_MS
) -> dict[str, Any] | None:
    """The highest step of a server in a scenario up to which it sustained every step.

    A server that fails a step and passes a higher one (near its limit, it happens) is held to
    the lower: a lucky step does not count.
    """
    ladder = sorted(
        (step for step in steps if step["server"] == server and step["scenario"] == scenario),
        key=lambda step: step["offered"],
    )
    top = None
    for step in ladder:
        if not sustained(step, p99_limit):
            break
        top = step
    return top


def _ms(value: float | str | None) -> str:
    if value is None:
        return "-"
    if value == "inf":
        return "lost"  # some deliveries never arrived within the drain time
    number = float(value)
    return f"{number:.1f}" if number < 100 else f"{number:.0f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if not ours or not theirs:
        return "-"
    return f"{ours / theirs:.2f}x"


def _cpu_per_delivery(step: dict[str, Any]) -> float | None:
    if step.get("server_cpu") is None or not step.get("delivered_per_s"):
        return None
    return float(step["server_cpu"]) * 1e6 / float(step["delivered_per_s"])


def _kernel_per_delivery(step: dict[str, Any]) -> float | None:
    if step.get("server_kernel_cpu") is None or not step.get("delivered_per_s"):
        return None
    return float(step["server_kernel_cpu"]) * 1e6 / float(step["delivered_per_s"])


def delivery_problems(step: dict[str, Any]) -> list[str]:
    """What a step's clients saw go wrong: closes, gaps, updates that never arrived."""
    problems = []
    if step["closed"]:
        codes = ",".join(str(code) for code in step["close_codes"])
        problems.append(f"{step['closed']} closed ({codes})")
    if step["gaps"]:
        problems.append(f"{step['gaps']} gaps")
    if step["undelivered"]:
        problems.append(f"{step['undelivered']:,} undelivered")
    if step["server_missing"]:
        problems.append(f"{step['server_missing']} missing on server")
    return problems


def _status(step: dict[str, Any]) -> str:
    if "error" in step:
        return f"error: {step['error']}"
    problems = delivery_problems(step)
    if step["gen_cpu"] > GENERATOR_BUSY:
        problems.append("generator busy")
    if not problems:
        problems.append("ok" if sustained(step) else "over")
    if step.get("attempts"):
        problems.append(f"best of {len(step['attempts']) + 1}")
    return ", ".join(problems)


def baseline(run: Run) -> str | None:
    """The server the others are compared with: the reference, else a `base-*` server."""
    if REFERENCE in run.servers:
        return REFERENCE
    return next((name for name in run.servers if name.startswith("base-")), None)


def _summary(run: Run, scenarios: list[str], p99_limit: float) -> list[str]:
    base = baseline(run)
    others = [name for name in run.servers if name != base]
    compared = [] if base is None else others
    lines = [
        "| scenario | "
        + " | ".join(f"{run.servers[name]}: max delivered/s" for name in run.servers)
        + "".join(f" | {name} / {base}" for name in compared)
        + " |",
        "|---" * (1 + len(run.servers) + len(compared)) + "|",
    ]
    for scenario in scenarios:
        rates: dict[str, float | None] = {}
        cells = []
        for name in run.servers:
            top = best(run.steps, name, scenario, p99_limit)
            rates[name] = top["delivered_per_s"] if top else None
            cells.append(
                f"{top['delivered_per_s']:,.0f} (step {top['offered']:,})" if top else "none"
            )
        if base is not None:
            cells += [_ratio(rates[name], rates[base]) for name in compared]
        lines.append(f"| {scenario} | " + " | ".join(cells) + " |")
    return lines


def _matched(run: Run, scenarios: list[str]) -> list[str]:
    """Latency and CPU of every server at the baseline's highest sustained step."""
    base = baseline(run)
    if base is None:
        return []
    lines = [
        f"| scenario | step (offered/s) | server | p50 ms | p99 ms | p99 vs {base}"
        f" | server CPU µs/delivery | CPU vs {base} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scenario in scenarios:
        top = best(run.steps, base, scenario)
        if top is None:
            continue
        ref_cpu = _cpu_per_delivery(top)
        for step in run.steps:
            if step["scenario"] != scenario or step["offered"] != top["offered"]:
                continue
            if "error" in step:
                continue
            p99 = step["p99_ms"]
            p99_ratio = _ratio(p99, top["p99_ms"]) if isinstance(p99, float | int) else "-"
            cpu = _cpu_per_delivery(step)
            lines.append(
                f"| {scenario} | {top['offered']:,} | {run.servers[step['server']]}"
                f" | {_ms(step['p50_ms'])} | {_ms(p99)} | {p99_ratio}"
                f" | {'-' if cpu is None else f'{cpu:.1f}'} | {_ratio(cpu, ref_cpu)} |"
            )
    return lines


def _steps_by_offer(run: Run, scenario: str) -> Iterator[tuple[int, dict[str, dict[str, Any]]]]:
    """Each offered rate of `scenario`, in the run's order, with the steps that completed at it
    by server."""
    for offered in dict.fromkeys(s["offered"] for s in run.steps if s["scenario"] == scenario):
        yield (
            offered,
            {
                step["server"]: step
                for step in run.steps
                if step["scenario"] == scenario
                and step["offered"] == offered
                and "error" not in step
            },
        )


def _cpu_by_step(run: Run, scenarios: list[str]) -> list[str]:
    """Every server's CPU per delivery at every step, and its ratio to the baseline's."""
    base = baseline(run)
    others = [name for name in run.servers if name != base]
    header = "| scenario | offered/s | keystrokes/s per client |"
    header += "".join(f" {run.servers[name]} µs |" for name in run.servers)
    header += "".join(f" {name} / {base} |" for name in others)
    lines = [header, "|" + "---|" * (3 + len(run.servers) + len(others))]
    for scenario in scenarios:
        rooms, clients = (int(part) for part in scenario.split("x"))
        for offered, steps in _steps_by_offer(run, scenario):
            cpu = {name: _cpu_per_delivery(step) for name, step in steps.items()}
            rate = offered / (rooms * clients * (clients - 1))
            cells = [f"{cpu[name]:.1f}" if cpu.get(name) else "-" for name in run.servers]
            cells += [_ratio(cpu.get(name), cpu.get(base or "")) for name in others]
            lines.append(f"| {scenario} | {offered:,} | {rate:.3g} | " + " | ".join(cells) + " |")
    return lines


def _kernel_by_step(run: Run, scenarios: list[str]) -> list[str]:
    """Every server's CPU per delivery at every step split into the kernel's (system time:
    sockets, wake-ups) and the process's own (user time)."""
    header = "| scenario | offered/s |"
    header += "".join(f" {run.servers[name]} kernel µs | user µs |" for name in run.servers)
    lines = [header, "|" + "---|" * (2 + 2 * len(run.servers))]
    for scenario in scenarios:
        for offered, steps in _steps_by_offer(run, scenario):
            cells = []
            for name in run.servers:
                step = steps.get(name)
                total = _cpu_per_delivery(step) if step else None
                kernel = _kernel_per_delivery(step) if step else None
                if total is None or kernel is None:
                    cells += ["-", "-"]
                else:
                    cells += [f"{kernel:.1f}", f"{total - kernel:.1f}"]
            lines.append(f"| {scenario} | {offered:,} | " + " | ".join(cells) + " |")
    return lines


def _details(run: Run, scenario: str) -> list[str]:
    lines = [
        "| offered/s | server | delivered/s | p50 ms | p99 ms | max ms | server CPU"
        " | µs/delivery | RSS MiB | generator CPU | other load | status |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for step in run.steps:
        if step["scenario"] != scenario:
            continue
        name = run.servers.get(step["server"], step["server"])
        if "error" in step:
            lines.append(f"| {step['offered']:,} | {name} | | | | | | | | | | {_status(step)} |")
            continue
        other = step["machine_cpu"] - (step["server_cpu"] or 0) - step["gen_cpu"]
        cpu = _cpu_per_delivery(step)
        lines.append(
            f"| {step['offered']:,} | {name} | {step['delivered_per_s']:,.0f}"
            f" | {_ms(step['p50_ms'])} | {_ms(step['p99_ms'])} | {_ms(step['max_ms'])}"
            f" | {100 * (step['server_cpu'] or 0):.0f}%"
            f" | {'-' if cpu is None else f'{cpu:.1f}'}"
            f" | {step['server_rss_mib'] or 0:.0f}"
            f" | {100 * step['gen_cpu']:.0f}% | {other:.2f} | {_status(step)} |"
        )
    return lines


def _load(label: str, load: dict[str, Any]) -> list[str]:
    if not load:
        return []
    lines = [f"- {label} ({load['at']}): load average {' '.join(load['loadavg'])}; busiest:"]
    lines += [f"  - `{line.strip()}`" for line in load["top"][:5]]
    return lines


def _generator(run: Run) -> list[str]:
    measured = [step for step in run.steps if "error" not in step]
    if not measured:
        return []
    busiest = max(measured, key=lambda step: step["gen_cpu"])
    delay = max(step["gen_loop_delay_p99_ms"] for step in measured)
    return [
        f"- Load generator: at most {100 * busiest['gen_cpu']:.0f} % of its core"
        f" ({busiest['scenario']}, {busiest['offered']:,}/s, {busiest['server']}); its event"
        f" loop delay p99 was at most {delay:.1f} ms in every step, so latencies well above"
        " that come from the server."
    ]


def report_header(run: Run, title: str) -> list[str]:
    """A report's first lines: its title, when and on which commit, and the command."""
    return [
        f"# {title}",
        "",
        f"Run {run.started} on commit `{run.machine['commit']}`, {run.seconds / 60:.1f} minutes:",
        "",
        "```",
        run.command,
        "```",
        "",
    ]


def rerender(
    json_path: Path, out_path: Path, notes: list[str], render: Callable[[Run], str]
) -> None:
    """`--report-only`: add `notes` to a saved run and write its report again."""
    run = Run.from_json(json.loads(json_path.read_text()))
    run.notes += notes
    json_path.write_text(json.dumps(run.to_json(), indent=1) + "\n")
    out_path.write_text(render(run))


def render(run: Run) -> str:
    scenarios = list(dict.fromkeys(step["scenario"] for step in run.steps))
    titles = {
        "1x2": "1 room x 2 clients",
        "1x20": "1 room x 20 clients",
        "10x10": "10 rooms x 10 clients",
        "1x100": "1 room x 100 clients",
    }
    machine = run.machine
    out = [
        *report_header(run, "Relay benchmark: fan-out latency and throughput"),
        f"- Machine: {machine['cpu']}, {machine['memory_gib']} GiB, Linux {machine['kernel']}.",
        f"- Python {machine['python']}, pycrdt {machine['pycrdt']}, uvicorn {machine['uvicorn']}"
        f" (uvloop, httptools, websockets-sansio, permessage-deflate off); Node {machine['node']},"
        f" yjs {machine['yjs']}, ws {machine['ws']},"
        f" @y/websocket-server {machine['@y/websocket-server']} (in memory, no persistence).",
        "- "
        + (
            "Servers pinned to core 0, the load generator to core 1 (`taskset`)."
            if run.pinned
            else "Nothing pinned."
        ),
        f"- Each step: {run.warmup:g} s warm-up, {run.duration:g} s measured. A step not sustained"
        " while the rest of the machine used over 0.25 cores was run again and the better"
        " attempt kept (`best of 2` in the tables).",
        *_generator(run),
        *_load("Machine load before", run.load_before),
        *_load("Machine load after", run.load_after),
        *[f"- {note}" for note in run.notes],
        "",
        "## Summary",
        "",
        "Highest step up to which each server sustained every step (p99 < 100 ms, at least 95 %"
        " of the offered deliveries arrived in the window, nothing closed or lost), as delivered"
        " updates per second, and the ratio to the baseline server (higher is better):",
        "",
        *_summary(run, scenarios, SUSTAINED_P99_MS),
        "",
        "The same with p99 < 1 s (throughput capacity; brief stalls from other work on the"
        " machine hurt this one less):",
        "",
        *_summary(run, scenarios, CAPACITY_P99_MS),
        "",
        "At the baseline server's highest sustained step (lower is better):",
        "",
        *_matched(run, scenarios),
        "",
        "Server CPU per delivery at every step (lower is better; a server past its knee spends"
        " less per delivery as its batches grow), and the ratio to the baseline:",
        "",
        *_cpu_by_step(run, scenarios),
    ]
    if any(step.get("server_kernel_cpu") is not None for step in run.steps):
        out += [
            "",
            "The same split into the kernel's part (system time: socket reads and writes, waking"
            " the readers) and the server's own (user time), µs per delivery:",
            "",
            *_kernel_by_step(run, scenarios),
        ]
    for scenario in scenarios:
        out += ["", f"## {titles.get(scenario, scenario)}", "", *_details(run, scenario)]
    out += [
        "",
        "Columns: *offered/s* is keystrokes typed per second times the other clients in the room"
        " (deliveries that should happen); *delivered/s* counts keystrokes that reached another"
        " client during the measured window; latencies are from send to receipt at each other"
        " client, for keystrokes sent in the window, a delivery that never came counting as"
        " infinitely late (`lost`); *server CPU* is the server process (all threads) in share of"
        " one core; *other load* is what the rest of the machine used meanwhile, in cores"
        " (noise from other work); *status* `over` means not sustained.",
        "",
    ]
    return "\n".join(out)
