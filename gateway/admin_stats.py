"""Live statistics for the admin API and the dashboard's overview.

Counts per app and status, bridge results and accept-to-ack latency come
from the store (the truth, shared by every process); connections per shard
come from the shard heartbeats.  The store part scans ``notifications``, so
one snapshot is cached for ``CACHE_S`` seconds per process: many dashboards
polling cost the database one scan per interval, not one per viewer.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import Any

from gateway.admin_queries import AdminQueries
from gateway.admin_shards import list_shards

CACHE_S = 1.0
LATENCY_WINDOW_S = 300  # percentiles over acks of the last five minutes
LATENCY_SAMPLE = 20_000  # newest acks in the window that are looked at
_COUNTED = ("accepted", "pending", "delivered", "expired", "dropped", "collapsed", "discarded", "relayed", "rejected")


def percentile(sorted_values: list[int], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return float(sorted_values[rank])


class StatsService:
    def __init__(self, core: Any, queries: AdminQueries) -> None:
        self.core = core
        self.q = queries
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

    async def _compute(self) -> dict[str, Any]:
        apps = {a.app_id: a.bundle_id for a in await self.core.store.list_apps()}
        per_app: dict[int, dict[str, int]] = {app_id: dict.fromkeys(_COUNTED, 0) for app_id in apps}
        for row in await self.q.fetch("counts_by_app"):
            counts = per_app.setdefault(int(row["app_id"]), dict.fromkeys(_COUNTED, 0))
            counts[row["status"]] = counts.get(row["status"], 0) + int(row["n"])
            counts["accepted"] += int(row["n"])  # every stored row was accepted once
        totals = dict.fromkeys(_COUNTED, 0)
        for counts in per_app.values():
            for key, n in counts.items():
                totals[key] = totals.get(key, 0) + n
        now_ms = int(time.time() * 1000)
        lat = sorted(
            int(r["ms"]) for r in await self.q.fetch("ack_latencies", now_ms - LATENCY_WINDOW_S * 1000, LATENCY_SAMPLE)
        )
        bridge = [
            {"status": r["status"], "reason": r["reason"] or None, "count": int(r["n"])}
            for r in await self.q.fetch("bridge_results")
        ]
        bridge.sort(key=lambda r: (-r["count"], r["status"], r["reason"] or ""))
        shards_error: str | None = None
        try:
            shards = await list_shards(self.core)
        except Exception as exc:  # Redis down: say so instead of failing the whole page
            shards = []
            shards_error = f"unavailable: {type(exc).__name__}"
        return {
            "at_ms": now_ms,
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
            "bridge": bridge,
        }
