"""Live statistics for the admin API and the dashboard's overview.

Counts per app and status and Apple's answers by reason come from the store
(the truth, shared by every process) through ``Rollup``: each look reads
only what changed since the previous one, so its cost follows the traffic,
not the size of ``notifications``.  Accept-to-ack percentiles read at most
``LATENCY_SAMPLE`` acks of the last five minutes by ``done_at_ms`` (indexed).
Connections per shard come from the shard heartbeats.  One snapshot is
cached for ``CACHE_S`` seconds per process, so many dashboards polling cost
the database one look per interval, not one per viewer.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from gateway.admin_queries import AdminQueries
from gateway.admin_rollup import COUNTED, LAG_MS, Rollup
from gateway.admin_shards import list_shards

CACHE_S = 1.0
DEFAULT_WINDOW_S = 900
LATENCY_WINDOW_S = 300  # percentiles over acks of the last five minutes
LATENCY_SAMPLE = 20_000  # newest acks in the window that are looked at


def percentile(sorted_values: list[int], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[rank])


class StatsService:
    def __init__(self, core: Any, queries: AdminQueries, window_s: int = DEFAULT_WINDOW_S) -> None:
        self.core = core
        self.q = queries
        self.rollup = Rollup(window_s)
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = asyncio.Lock()

    async def snapshot(self) -> dict[str, Any]:
        async with self._lock:
            now = time.monotonic()
            if self._cached is not None and now - self._cached[0] < CACHE_S:
                return self._cached[1]
            snap = await self._compute()
            self._cached = (time.monotonic(), snap)
            return snap

    async def _look(self, now_ms: int) -> None:
        hi = now_ms - LAG_MS
        if self.rollup.since_ms is None:
            start = hi - self.rollup.window_ms
            pending = await self.q.fetch("pending_since", start)
            accepted = await self.q.fetch("accepted_done_between", start, hi)
            done = await self.q.fetch("done_between", start, hi)
            self.rollup.start(hi, pending, accepted, done)
            return
        done = await self.q.fetch("done_between", self.rollup.last_ms, hi)
        self.rollup.add(hi, done, await self.q.fetch("pending_by_app"))

    async def _compute(self) -> dict[str, Any]:
        now_ms = int(time.time() * 1000)
        await self._look(now_ms)
        apps = {a.app_id: a.bundle_id for a in await self.core.store.list_apps()}
        per_app = self.rollup.per_app()
        for app_id in apps:
            per_app.setdefault(app_id, dict.fromkeys(COUNTED, 0))
        totals = dict.fromkeys(COUNTED, 0)
        for counts in per_app.values():
            for key, n in counts.items():
                totals[key] = totals.get(key, 0) + n
        lat = sorted(
            int(r["ms"]) for r in await self.q.fetch("ack_latencies", now_ms - LATENCY_WINDOW_S * 1000, LATENCY_SAMPLE)
        )
        shards_error: str | None = None
        try:
            shards = await list_shards(self.core)
        except Exception as exc:  # Redis down: say so instead of failing the whole page
            shards = []
            shards_error = f"unavailable: {type(exc).__name__}"
        return {
            "at_ms": now_ms,
            # Counts cover the last window_s (whole minutes, up to 2 s ago); pending is now.
            "window_s": self.rollup.window_ms // 1000,
            "apps": [
                {"app_id": app_id, "bundle_id": apps.get(app_id, f"(deleted app {app_id})"), **counts}
                for app_id, counts in sorted(per_app.items())
            ],
            "totals": totals,
            "connections": {
                "total": sum(s["connections"] for s in shards if s["status"] != "down"),
                "per_shard": {s["shard"]: s["connections"] for s in shards},
                "error": shards_error,
            },
            "ack_latency_ms": {
                "window_s": LATENCY_WINDOW_S,
                "samples": len(lat),
                "p50": percentile(lat, 0.50),
                "p90": percentile(lat, 0.90),
                "p99": percentile(lat, 0.99),
                "max": float(lat[-1]) if lat else None,
            },
            "bridge": self.rollup.bridge(),
        }
