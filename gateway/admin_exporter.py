"""Store-wide figures as Prometheus gauges, exported by the worker.

Per-process counters cannot say how many notifications are pending right
now or how many an app has had delivered: only the store knows.  The worker
reads the admin statistics every ``INTERVAL_S`` seconds and publishes them
as ``pushgw_notifications{app,status}`` and the accept-to-ack percentiles as
``pushgw_ack_latency_seconds{quantile}``.  ``app`` is the bundle id, so the
label is bounded by the number of registered apps (never a token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from prometheus_client import Gauge

from gateway.admin_queries import AdminQueries
from gateway.admin_stats import StatsService

log = logging.getLogger(__name__)

INTERVAL_S = 15.0
_STATUSES = ("pending", "delivered", "expired", "dropped", "collapsed", "discarded", "relayed", "rejected")

NOTIFICATIONS = Gauge(
    "pushgw_notifications",
    "Notifications in the store by app and status (read from the store by the worker)",
    ["app", "status"],
    multiprocess_mode="max",
)
ACK_LATENCY = Gauge(
    "pushgw_ack_latency_seconds",
    "Accept-to-ack time percentiles over the acks of the last five minutes",
    ["quantile"],
    multiprocess_mode="max",
)


class StatsExporter:
    def __init__(self, core: Any) -> None:
        self.stats = StatsService(core, AdminQueries(core.store))
        self._task: asyncio.Task[None] | None = None
        self._apps: set[str] = set()

    async def export_once(self) -> None:
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
        lat = snap["ack_latency_ms"]
        for q in ("p50", "p90", "p99"):
            value = lat[q]
            ACK_LATENCY.labels(f"0.{q[1:]}").set(value / 1000 if value is not None else float("nan"))

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
