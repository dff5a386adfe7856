"""Periodic store maintenance: the expiry sweeper and retention purge.

DESIGN.md promise 5: nothing is delivered after ``apns-expiration``.  The
backlog query already hides expired rows; the sweeper turns them into the
terminal ``expired`` status so the status API and metrics tell the truth.
Retention deletes terminal rows (and old feedback records) after
``retention_s`` so the store does not grow without bound, and the power
state nothing can use any more: Live Activity order of activities untouched
for ``retention_s`` (an activity lasts at most 12 hours) and background sends
older than the budget's hour.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import Counter

from connection_server.admission import HOUR_MS as BACKGROUND_WINDOW_MS
from gateway.store.base import Store
from schemas.errors import StoreUnavailable

log = logging.getLogger("pushgw.worker")

SWEPT = Counter("pushgw_worker_expired_total", "Pending notifications marked expired by the sweeper")
PURGED = Counter("pushgw_worker_purged_total", "Terminal notifications deleted by retention")


class _Periodic:
    """Runs ``tick()`` every ``interval_s`` until stopped; a failing tick is
    logged and retried, never allowed to end the loop."""

    name = "periodic"
    interval_s: float
    _task: asyncio.Task[None] | None = None

    async def tick(self) -> None:
        raise NotImplementedError

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except StoreUnavailable:
                log.warning("%s: store unavailable; retrying", self.name)
            except Exception:  # a bug must not kill the worker loop
                log.exception("%s failed", self.name)
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"pushgw-{self.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


class Maintenance(_Periodic):
    """The expiry sweeper and retention purge, every ``interval_s``."""

    name = "maintenance"

    def __init__(self, store: Store, *, retention_s: int, interval_s: float = 5.0) -> None:
        self.store = store
        self.retention_s = retention_s
        self.interval_s = interval_s

    async def sweep_once(self, now_ms: int | None = None) -> tuple[int, int]:
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        expired = 0
        while True:  # drain in chunks so one sweep cannot hold a huge transaction
            n = await self.store.expire_due(now_ms // 1000)
            expired += n
            if n < 10_000:
                break
        cutoff = now_ms - self.retention_s * 1000
        purged = await self.store.purge(cutoff)
        await self.store.purge_feedback(cutoff)
        await self.store.purge_power_state(cutoff, now_ms - BACKGROUND_WINDOW_MS)
        SWEPT.inc(expired)
        PURGED.inc(purged)
        return expired, purged

    async def tick(self) -> None:
        await self.sweep_once()


REPAIRED = Counter("pushgw_worker_route_repairs_total", "Devices whose shard was rung by the route repair")


class RouteRepair(_Periodic):
    """Rings the shards of connected devices whose pending rows may never have
    been routed.

    Routing happens after the commit, in the accepting process.  If that
    process dies between the commit and the publish, or a doorbell is lost
    (Redis restart, full route queue), the row is safely pending but a device
    that stays connected would not see it until it reconnects.  Every
    ``interval_s`` this scans the rows accepted in the previous window, ending
    ``delay_ms`` ago (time for normal routing and the ack), and asks the
    engine to ring those devices' shards; a shard re-drains from the store and
    drops what it already has in flight, so a ring never duplicates.  Rows
    scheduled with ``deliver_at_ms`` are rung the same way when they come due
    (at most ``delay_ms + interval_s`` late).  Rows still pending at
    ``retry_ages_ms`` are rung again: the first ring may have been lost too.
    """

    name = "route-repair"

    def __init__(
        self,
        store: Store,
        engine: Any,
        *,
        delay_ms: int = 2000,
        retry_ages_ms: Sequence[int] = (5_000, 15_000, 60_000),
        interval_s: float = 1.0,
        lookback_ms: int = 300_000,
    ) -> None:
        self.store = store
        self.engine = engine
        self.delay_ms = delay_ms
        # A ring can itself be lost (Redis down, presence not yet re-claimed
        # after a Redis restart), so each row is looked at again when it is
        # older: a row still pending then is rung again.  Each age keeps its
        # own window, so every row is scanned once per age, not once per tick.
        self.ages_ms = (delay_ms, *retry_ages_ms)
        self.interval_s = interval_s
        self.lookback_ms = lookback_ms  # first scan after start covers a recent crash
        self._scanned_to_ms: dict[int, int] = {}

    async def scan_once(self, now_ms: int | None = None) -> int:
        """Ring the devices with pending rows in each age's new window; how many were rung."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        rung: set[str] = set()
        for age in self.ages_ms:
            to_ms = now_ms - age
            # The first scan after start looks back over lookback_ms; the later ages
            # start from now (the first age has already covered what is older).
            first = to_ms - self.lookback_ms if age == self.delay_ms else to_ms
            from_ms = self._scanned_to_ms.setdefault(age, first)
            if to_ms <= from_ms:
                continue
            rung.update(await self.store.pending_devices(from_ms, to_ms))
            self._scanned_to_ms[age] = to_ms
        if rung:
            self.engine.ring_devices(sorted(rung))
            REPAIRED.inc(len(rung))
        return len(rung)

    async def tick(self) -> None:
        await self.scan_once()
