"""Once a second: connections, deliveries, acceptances, server RSS and CPU; printed as a live line.

The samples become the time series of the JSON result and the HTML plots
(connections, throughput, RSS over time).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any

from loadtest.harness.procs import cpu_seconds, rss_kib


class Timeline:
    def __init__(
        self, label: str, t0: float, fleet: Any, senders: list[Any], server_pids: Callable[[], list[int]],
        interval: float = 1.0,
    ) -> None:  # fmt: skip
        self.label = label
        self.t0 = t0
        self.fleet = fleet
        self.senders = senders
        self.server_pids = server_pids
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
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
