"""What a fuzz run counts, in bounded memory: counters, a latency reservoir, capped lists."""

from __future__ import annotations

import random
import resource
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

KEEP_EXAMPLES = 50  # per list of findings: enough to act on, bounded for a week-long run


def _own_rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() // 1024


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class Reservoir:
    """A uniform sample of at most `size` values (Vitter's algorithm R) and the exact max."""

    def __init__(self, size: int = 100_000, seed: int = 0) -> None:
        self._size = size
        self._values: list[float] = []
        self._seen = 0
        self._rng = random.Random(seed)
        self.max = 0.0

    def add(self, value: float) -> None:
        self._seen += 1
        self.max = max(self.max, value)
        if len(self._values) < self._size:
            self._values.append(value)
        else:
            slot = self._rng.randrange(self._seen)
            if slot < self._size:
                self._values[slot] = value

    @property
    def count(self) -> int:
        return self._seen

    def quantile(self, q: float) -> float | None:
        if not self._values:
            return None
        ordered = sorted(self._values)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Stats:
    started: float = 0.0
    frames_sent: int = 0
    frame_bytes: int = 0
    frames_by_category: Counter[str] = field(default_factory=Counter)
    frames_by_kind: Counter[str] = field(default_factory=Counter)
    frames_by_via: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    connect_failures: Counter[str] = field(default_factory=Counter)
    close_codes: Counter[str] = field(default_factory=Counter)  # who closed: code
    unexpected_closes: Counter[str] = field(default_factory=Counter)  # by the kind sent last
    tolerated: Counter[str] = field(default_factory=Counter)  # refusable frames it kept open on
    http_statuses: Counter[str] = field(default_factory=Counter)  # "POST update 204"
    server_output: Counter[str] = field(default_factory=Counter)
    server_output_examples: list[str] = field(default_factory=list)
    health: Counter[str] = field(default_factory=Counter)  # "healthz 200", "readyz error"
    health_failures: list[str] = field(default_factory=list)
    slow_answers: int = 0  # /healthz answers slower than campaign.SLOW_SECONDS
    slow_examples: list[dict[str, Any]] = field(default_factory=list)
    crashes: list[dict[str, Any]] = field(default_factory=list)
    stalls: int = 0  # crashes that were the fuzzer aborting a stuck server
    crash_signatures: Counter[str] = field(default_factory=Counter)
    poisoned_rooms: list[dict[str, Any]] = field(default_factory=list)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    rooms_differing: list[dict[str, Any]] = field(default_factory=list)
    rooms_compared: int = 0
    server_cpu_seconds: float = 0.0
    rss_peak_kib: int = 0
    rss_final_kib: int = 0
    # (seconds, server RSS, fuzzer RSS), in KiB, thinned as the run grows
    rss_samples: list[tuple[float, int, int]] = field(default_factory=list)
    latency: Reservoir = field(default_factory=Reservoir)
    honest_edits: int = 0
    honest_checks: int = 0
    honest_errors: Counter[str] = field(default_factory=Counter)
    honest_error_examples: list[str] = field(default_factory=list)
    honest_reconnects: int = 0

    def note(self, examples: list[Any], item: Any) -> None:
        if len(examples) < KEEP_EXAMPLES:
            examples.append(item)

    def honest_error(self, kind: str, detail: str) -> None:
        self.honest_errors[kind] += 1
        self.note(self.honest_error_examples, f"{kind}: {detail}")

    def sample_rss(self, elapsed: float, rss_kib: int, hwm_kib: int) -> None:
        self.rss_peak_kib = max(self.rss_peak_kib, hwm_kib, rss_kib)
        self.rss_final_kib = rss_kib
        self.rss_samples.append((round(elapsed, 1), rss_kib, _own_rss_kib()))
        if len(self.rss_samples) > 2000:
            self.rss_samples = self.rss_samples[::2]

    def to_json(self, elapsed: float, settings: dict[str, Any]) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1000, 2)

        return {
            "settings": settings,
            "elapsed_seconds": round(elapsed, 1),
            "frames_sent": self.frames_sent,
            "frames_per_second": round(self.frames_sent / elapsed, 1) if elapsed else None,
            "frame_bytes": self.frame_bytes,
            "frames_by_category": dict(self.frames_by_category.most_common()),
            "frames_by_via": dict(self.frames_by_via),
            "frames_by_kind_top": dict(self.frames_by_kind.most_common(60)),
            "connections": self.connections,
            "connect_failures": dict(self.connect_failures),
            "close_codes": dict(self.close_codes.most_common()),
            "unexpected_closes_by_last_kind": dict(self.unexpected_closes.most_common(40)),
            "refusable_frames_tolerated": dict(self.tolerated.most_common(40)),
            "http_statuses": dict(self.http_statuses.most_common()),
            "server_output_anomalies": dict(self.server_output),
            "server_output_examples": self.server_output_examples,
            "health": dict(self.health),
            "health_failures": self.health_failures,
            "slow_health_answers": self.slow_answers,
            "slow_health_examples": self.slow_examples,
            "crashes": self.crashes,
            "stalls_aborted": self.stalls,
            "crash_signatures": dict(self.crash_signatures.most_common()),
            "poisoned_rooms": self.poisoned_rooms,
            "restarts": self.restarts,
            "rooms_compared_after_restart": self.rooms_compared,
            "rooms_differing_after_restart": self.rooms_differing,
            "server_cpu_seconds": round(self.server_cpu_seconds, 1),
            "fuzzer_cpu_seconds": round(_cpu(resource.RUSAGE_SELF), 1),
            # Helpers that have exited (the server's incarnations are children too, and are
            # counted above): the oracle, the inspector, the honest clients.
            "finished_children_cpu_seconds": round(_cpu(resource.RUSAGE_CHILDREN), 1),
            "server_rss_peak_mib": round(self.rss_peak_kib / 1024, 1),
            "server_rss_final_mib": round(self.rss_final_kib / 1024, 1),
            "server_rss_samples": self.rss_samples,
            "fuzzer_peak_rss_mib": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
            "honest": {
                "edits": self.honest_edits,
                "latency_samples": self.latency.count,
                "latency_p50_ms": ms(self.latency.quantile(0.5)),
                "latency_p99_ms": ms(self.latency.quantile(0.99)),
                "latency_max_ms": ms(self.latency.max if self.latency.count else None),
                "checks_against_rest_text": self.honest_checks,
                "reconnects": self.honest_reconnects,
                "errors": dict(self.honest_errors),
                "error_examples": self.honest_error_examples,
            },
        }
