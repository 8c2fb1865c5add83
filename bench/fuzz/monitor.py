"""Watching the server while a campaign runs: its CPU and memory, /healthz and /readyz every
second (a slow answer names the frames sent just before; none for STALL_SECONDS aborts it),
and a progress line every 10 s.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from bench.fuzz.campaign import Campaign

STALL_SECONDS = 20.0  # no /healthz answer for that long while fuzzing: the server is stuck
SLOW_SECONDS = 0.5  # a /healthz answer slower than that: something blocked the event loop


class Monitor:
    def __init__(self, campaign: Campaign) -> None:
        self._campaign = campaign
        self._cpu_pid: int | None = None
        self._cpu_base = self._cpu_last = 0.0
        self._last_healthy = time.monotonic()

    def sample_cpu(self) -> None:
        """CPU of all the server's incarnations: each one's last reading is kept when it ends."""
        pid, seconds = self._campaign.server.pid, self._campaign.server.cpu_seconds()
        if seconds is None:
            return
        if pid != self._cpu_pid:
            self._cpu_base += self._cpu_last
            self._cpu_pid, self._cpu_last = pid, 0.0
        self._cpu_last = seconds
        self._campaign.stats.server_cpu_seconds = self._cpu_base + seconds

    async def run(self) -> None:
        last_print = 0.0
        self._last_healthy = time.monotonic()
        while True:
            await asyncio.sleep(1)
            self.sample_cpu()
            memory = self._campaign.server.memory_kib()
            if memory is not None:
                self._campaign.stats.sample_rss(self._campaign.elapsed, *memory)
            if not self._campaign.up.is_set() or not self._campaign.server.running:
                self._last_healthy = time.monotonic()
            elif await self._health():
                self._last_healthy = time.monotonic()
            elif time.monotonic() - self._last_healthy > STALL_SECONDS:
                # Stuck (a loop in the CRDT core, say): abort it; the death is handled as any.
                self._campaign.stats.stalls += 1
                print(f"server stalled: no /healthz answer for {STALL_SECONDS} s", flush=True)
                self._campaign.server.abort()
                self._last_healthy = time.monotonic()
            if self._campaign.elapsed - last_print >= 10:
                last_print = self._campaign.elapsed
                await self._progress()

    async def _progress(self) -> None:
        stats, elapsed = self._campaign.stats, max(self._campaign.elapsed, 1e-9)
        honest = await self._campaign.honest.command("report")
        print(
            f"[{elapsed:7.1f}s] {stats.frames_sent} frames ({stats.frames_sent / elapsed:.0f}/s),"
            f" {len(stats.crashes)} crashes, server CPU {stats.server_cpu_seconds / elapsed:.0%},"
            f" RSS {stats.rss_final_kib / 1024:.0f} MiB (peak {stats.rss_peak_kib / 1024:.0f}),"
            f" honest p50 {honest.get('latency_p50_ms')} ms p99 {honest.get('latency_p99_ms')} ms",
            flush=True,
        )

    def _slow_server(self, waited: float) -> None:
        """/healthz waited that long: the event loop was blocked. The suspects are the frames
        sent just before (their kind and size)."""
        now = self._campaign.elapsed
        recent = [frame for frame in self._campaign.ring if now - waited - 1.0 <= frame.at <= now]
        recent.sort(key=lambda frame: len(frame.data), reverse=True)
        suspects = [f"{frame.kind} ({len(frame.data)} B)" for frame in recent[:8]]
        self._campaign.stats.slow_answers += 1
        self._campaign.stats.note(
            self._campaign.stats.slow_examples,
            {
                "at_seconds": round(now, 1),
                "waited_seconds": round(waited, 2),
                "suspects": suspects,
            },
        )

    async def _health(self) -> bool:
        """Ask /healthz and /readyz; True if /healthz answered 200."""
        healthy = False
        for path in ("/healthz", "/readyz"):
            asked = time.monotonic()
            try:
                response = await self._campaign.http.get(path, timeout=5)
                status = str(response.status_code)
            except httpx.HTTPError as error:
                status = type(error).__name__
            waited = time.monotonic() - asked
            if waited > SLOW_SECONDS and self._campaign.up.is_set():
                self._slow_server(waited)
            self._campaign.stats.health[f"{path} {status}"] += 1
            healthy = healthy or (path == "/healthz" and status == "200")
            if status != "200" and self._campaign.server.running and self._campaign.up.is_set():
                self._campaign.stats.note(
                    self._campaign.stats.health_failures,
                    f"{round(self._campaign.elapsed, 1)} s: {path} {status}",
                )
        return healthy
