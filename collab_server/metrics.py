"""What the server counts, served at /metrics in the Prometheus text format (version 0.0.4).

Counters are plain integers bumped on the event loop; gauges (rooms, peers, store readiness) are
read from their owners when scraped, so nothing is kept twice. Each process reports its own
figures: scrape every process behind a load balancer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class Metrics:
    updates_stored: int = 0  # log rows appended by this process's clients (and REST writes)
    update_bytes_stored: int = 0
    connections_opened: int = 0  # WebSocket peers admitted to a room
    connections_open: int = 0  # WebSocket connections being served now (for the cap)
    connections_throttled: int = 0  # connections that went over COLLAB_CLIENT_MESSAGES_PER_SECOND
    connections_closed: Counter[int] = field(default_factory=Counter)  # by the close code we sent
    completions: Counter[str] = field(default_factory=Counter)  # by outcome
    updates_refused: Counter[str] = field(default_factory=Counter)  # by the rule they broke
    rooms_broken: int = 0  # rooms dropped from memory after yrs failed on a stored update
    openings_refused: Counter[str] = field(default_factory=Counter)  # "rate" or "full"


@dataclass(frozen=True)
class Gauges:
    rooms_loaded: int
    peers: int
    store_ready: bool
    rooms_quarantined: int


def exposition(metrics: Metrics, gauges: Gauges) -> str:
    """The Prometheus text for `metrics` and `gauges`."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str, samples: Iterable[tuple[str, int]]) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(f"{name}{labels} {value}" for labels, value in samples)

    family("collab_rooms_loaded", "gauge", "Rooms held in memory.", [("", gauges.rooms_loaded)])
    family("collab_peers", "gauge", "WebSocket clients connected.", [("", gauges.peers)])
    family(
        "collab_connections_open",
        "gauge",
        "WebSocket connections being served, those still closing included.",
        [("", metrics.connections_open)],
    )
    family(
        "collab_store_ready",
        "gauge",
        "1 while the store takes durable writes, 0 during an outage.",
        [("", int(gauges.store_ready))],
    )
    family(
        "collab_updates_stored_total",
        "counter",
        "Document updates stored (then relayed) for this process's clients.",
        [("", metrics.updates_stored)],
    )
    family(
        "collab_update_bytes_stored_total",
        "counter",
        "Bytes of those updates.",
        [("", metrics.update_bytes_stored)],
    )
    family(
        "collab_connections_opened_total",
        "counter",
        "WebSocket clients admitted to a room.",
        [("", metrics.connections_opened)],
    )
    family(
        "collab_connections_throttled_total",
        "counter",
        "WebSocket clients that sent faster than the per-client rate and were read more slowly.",
        [("", metrics.connections_throttled)],
    )
    family(
        "collab_connections_closed_total",
        "counter",
        "WebSocket connections the server closed, by close code (4504: too slow, 4401: token).",
        [
            (f'{{code="{code}"}}', count)
            for code, count in sorted(metrics.connections_closed.items())
        ],
    )
    family(
        "collab_rooms_quarantined",
        "gauge",
        "Rooms whose stored log cannot be replayed, refused until an admin recovers them.",
        [("", gauges.rooms_quarantined)],
    )
    family(
        "collab_updates_refused_total",
        "counter",
        "Document updates refused before they were stored, by rule (malformed, limits, depth, "
        "surrogate_split, unsupported, pending, crdt).",
        [(f'{{rule="{rule}"}}', n) for rule, n in sorted(metrics.updates_refused.items())],
    )
    family(
        "collab_rooms_reloaded_total",
        "counter",
        "Rooms dropped from memory (their clients reconnect) because the CRDT core failed on a "
        "stored update and the document could not be rebuilt at once.",
        [("", metrics.rooms_broken)],
    )
    family(
        "collab_room_openings_refused_total",
        "counter",
        "Rooms not brought into memory or created: one address over "
        "COLLAB_ROOM_OPENINGS_PER_MINUTE (rate), or the process at COLLAB_MAX_ROOMS_LOADED (full).",
        [(f'{{reason="{reason}"}}', n) for reason, n in sorted(metrics.openings_refused.items())],
    )
    family(
        "collab_completions_total",
        "counter",
        "Completion requests, by outcome (complete, partial, busy, unavailable).",
        [(f'{{outcome="{outcome}"}}', n) for outcome, n in sorted(metrics.completions.items())],
    )
    return "\n".join(lines) + "\n"
