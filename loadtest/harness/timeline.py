"""Once a second: connections, deliveries, acceptances, server RSS and CPU; printed as a live line.

The samples become the time series of the JSON result and the HTML plots
(connections, throughput, RSS over time).  Each sample also carries the CPU
seconds used so far by every role -- the system's processes (shards, API,
worker, PostgreSQL, Redis, or Mosquitto) and the harness's own (device load
processes, senders, the coordinator) -- so a result shows where the CPU went
and whether the load generator itself was the bottleneck.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from loadtest.harness.procs import cpu_seconds, rss_kib


class Timeline:
    def __init__(
        self, label: str, t0: float, fleet: Any, senders: list[Any], server_pids: Callable[[], list[int]],
        interval: float = 1.0, roles: Callable[[], dict[str, list[int]]] | None = None,
    ) -> None:  # fmt: skip
        self.label = label
        self.t0 = t0
        self.fleet = fleet
        self.senders = senders
        self.server_pids = server_pids
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.roles = roles
        self._cpu_seen: dict[int, float] = {}  # pid -> CPU seconds at its last sample
        self._cpu_by_role: dict[str, float] = {}
        self.note = ""
        self._task: asyncio.Task[None] | None = None
        self._tty = sys.stdout.isatty()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.sample()
        if self._tty:
            sys.stdout.write("\n")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.sample()
            except Exception as exc:  # a sample must never break the run
                self.note = f"sample failed: {exc!r}"

    async def sample(self) -> None:
        now = time.time()
        fleet = await self.fleet.stats() if self.fleet is not None else {"connected": 0, "received": 0}
        accepted = sent = 0
        for s in self.senders:
            st = await s.call("stats", timeout=30)
            accepted += st["accepted"]
            sent += st["sent"]
        pids = self.server_pids()
        sample = {
            "t": round(now - self.t0, 2),
            "connected": fleet["connected"],
            "received": fleet["received"],
            "sent": sent,
            "accepted": accepted,
            "server_rss_kib": sum(rss_kib(p) for p in pids),
            "server_cpu_s": round(sum(cpu_seconds(p) for p in pids), 2),
        }
        sample["cpu_by_role_s"] = self._role_cpu(first=not self.samples)
        prev = self.samples[-1] if self.samples else None
        if prev is not None and sample["t"] > prev["t"]:
            dt = sample["t"] - prev["t"]
            sample["delivered_per_s"] = round((sample["received"] - prev["received"]) / dt)
            sample["accepted_per_s"] = round((sample["accepted"] - prev["accepted"]) / dt)
            sample["server_cpu_pct"] = round(100 * (sample["server_cpu_s"] - prev["server_cpu_s"]) / dt)
        self.samples.append(sample)
        line = (
            f"[{self.label}] t={sample['t']:6.1f}s conn={sample['connected']:>7,} "
            f"accepted={sample['accepted']:>8,} delivered={sample['received']:>8,} "
            f"({sample.get('delivered_per_s', 0):>6,}/s) rss={sample['server_rss_kib'] / 1024:7.1f} MiB "
            f"cpu={sample.get('server_cpu_pct', 0):>3}% {self.note}"
        )
        if self._tty:
            sys.stdout.write("\r" + line[:150].ljust(150))
            sys.stdout.flush()
        else:
            print(line, flush=True)

    def _role_pids(self) -> dict[str, list[int]]:
        roles = dict(self.roles()) if self.roles is not None else {"server": self.server_pids()}
        if self.fleet is not None:
            roles["load: devices"] = self.fleet.pids()
        roles["load: senders"] = [s.process.pid for s in self.senders if s.process.pid is not None]
        roles["load: coordinator"] = [os.getpid()]
        return roles

    def _role_cpu(self, first: bool) -> dict[str, float]:
        """CPU seconds per role since the first sample.  Counted per pid as it goes,
        so a process that exits (a killed shard) keeps what it used, and one that
        starts later (a restarted shard, a new PostgreSQL backend) adds all of its."""
        for role, pids in self._role_pids().items():
            total = self._cpu_by_role.get(role, 0.0)
            for pid in pids:
                now = cpu_seconds(pid)
                before = self._cpu_seen.get(pid, now if first else 0.0)
                total += max(0.0, now - before)
                self._cpu_seen[pid] = now
            self._cpu_by_role[role] = total
        return {role: round(v, 3) for role, v in self._cpu_by_role.items()}


def cpu_breakdown(samples: list[dict[str, Any]], messages: int) -> dict[str, Any]:
    """CPU seconds per role over a timeline, and per message (µs) when ``messages`` > 0."""
    if not samples or "cpu_by_role_s" not in samples[-1]:
        return {}
    seconds = samples[-1]["cpu_by_role_s"]
    window = samples[-1]["t"] - samples[0]["t"]
    out: dict[str, Any] = {
        "window_s": round(window, 2),
        "cpu_s": seconds,
        "cpu_pct_of_window": {r: round(100 * v / window) for r, v in seconds.items()} if window > 0 else {},
    }
    if messages > 0:
        out["messages"] = messages
        out["cpu_us_per_message"] = {r: round(1e6 * v / messages) for r, v in seconds.items()}
    return out
