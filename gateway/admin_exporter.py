"""Store-wide figures for Prometheus, exported by the worker.

Per-process counters cannot say how many notifications are pending right
now or how many an app has had delivered: only the store knows.  Every
``INTERVAL_S`` seconds the worker:

* publishes the admin statistics (``admin_stats``) as
  ``pushgw_notifications{app,status}``: pending now, the rest over the
  statistics window;
* reads the acks since its previous look (``done_at_ms``, indexed; grouped
  by latency in SQL) and adds them to the ``pushgw_ack_latency_seconds``
  histogram, so percentiles come from ``histogram_quantile`` over any range.

``app`` is the bundle id, bounded by the registered apps (never a token).
Every worker reads the same store, so with several workers each histogram
carries every ack: aggregate with ``max by (le)``, not ``sum``.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from typing import Any

from prometheus_client import Gauge, Histogram

from gateway.admin_queries import AdminQueries
from gateway.admin_rollup import LAG_MS
from gateway.admin_stats import DEFAULT_WINDOW_S, StatsService

log = logging.getLogger(__name__)

INTERVAL_S = 15.0
_STATUSES = ("pending", "delivered", "expired", "dropped", "collapsed", "discarded", "superseded", "relayed",
             "rejected")  # fmt: skip

NOTIFICATIONS = Gauge(
    "pushgw_notifications",
    "Notifications by app and status: pending now, the others over the admin statistics window",
    ["app", "status"],
    multiprocess_mode="max",
)
# Acks of online devices take milliseconds; those of devices that were
# offline take as long as the device stayed away: buckets up to a day.
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
ACK_LATENCY = Histogram(
    "pushgw_ack_latency_seconds",
    "Accept-to-ack time of delivered notifications (read from the store by the worker)",
    buckets=ACK_BUCKETS,
)


def add_grouped(hist: Histogram, grouped: list[tuple[float, int]]) -> None:
    """Add ``count`` observations of each ``value`` in O(buckets), not O(observations).

    prometheus_client has no bulk observe; its histogram keeps one value per
    bucket (not cumulative) and a sum, which is what ``observe`` increments.
    tests/admin/test_ack_histogram.py checks this against ``observe``.
    """
    bounds = list(hist._upper_bounds)
    per_bucket = [0] * len(bounds)
    total = 0.0
    for value, count in grouped:
        per_bucket[bisect.bisect_left(bounds, value)] += count
        total += value * count
    for i, n in enumerate(per_bucket):
        if n:
            hist._buckets[i].inc(n)
    if grouped:
        hist._sum.inc(total)


class StatsExporter:
    def __init__(self, core: Any, ack_histogram: Histogram = ACK_LATENCY) -> None:
        self.ack_histogram = ack_histogram
        window_s = getattr(getattr(core, "cfg", None), "admin_stats_window_s", DEFAULT_WINDOW_S)
        self.q = AdminQueries(core.store)
        self.stats = StatsService(core, self.q, window_s)
        self._task: asyncio.Task[None] | None = None
        self._apps: set[str] = set()
        self._acks_until_ms: int | None = None  # acks up to here are in the histogram

    async def export_once(self) -> None:
        await self.export_acks()
        snap = await self.stats.snapshot()
        apps = set()
        for app in snap["apps"]:
            apps.add(app["bundle_id"])
            for status in _STATUSES:
                NOTIFICATIONS.labels(app["bundle_id"], status).set(app.get(status, 0))
        for gone in self._apps - apps:  # deleted apps leave the exposition
            for status in _STATUSES:
                with contextlib.suppress(KeyError):
                    NOTIFICATIONS.remove(gone, status)
        self._apps = apps

    async def export_acks(self) -> int:
        """Add the acks since the previous look to the histogram; returns how many."""
        hi = int(time.time() * 1000) - LAG_MS
        if self._acks_until_ms is None:  # from now on: a restarted worker does not count twice
            self._acks_until_ms = hi
            return 0
        rows = await self.q.fetch("ack_latency_counts", self._acks_until_ms, hi)
        self._acks_until_ms = hi
        grouped = [(max(0, int(r["ms"])) / 1000, int(r["n"])) for r in rows]
        add_grouped(self.ack_histogram, grouped)
        return sum(n for _, n in grouped)

    async def _loop(self) -> None:
        while True:
            try:
                await self.export_once()
            except Exception as exc:  # store down: keep the last figures, try again
                log.debug("stats export failed: %s", exc)
            await asyncio.sleep(INTERVAL_S)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="stats-exporter")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
