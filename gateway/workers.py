"""Periodic store maintenance: the expiry sweeper and retention purge.

DESIGN.md promise 5: nothing is delivered after ``apns-expiration``.  The
backlog query already hides expired rows; the sweeper turns them into the
terminal ``expired`` status so the status API and metrics tell the truth.
Retention deletes terminal rows (and old feedback records) after
``retention_s`` so the store does not grow without bound.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Counter

from gateway.store.base import Store
from schemas.errors import StoreUnavailable

log = logging.getLogger("pushgw.worker")

SWEPT = Counter("pushgw_worker_expired_total", "Pending notifications marked expired by the sweeper")
PURGED = Counter("pushgw_worker_purged_total", "Terminal notifications deleted by retention")


class Maintenance:
    """Runs ``sweep_once`` every ``interval_s`` until stopped."""

    def __init__(self, store: Store, *, retention_s: int, interval_s: float = 5.0) -> None:
        self.store = store
        self.retention_s = retention_s
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

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
        SWEPT.inc(expired)
        PURGED.inc(purged)
        return expired, purged

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except StoreUnavailable:
                log.warning("sweeper: store unavailable; retrying")
            except Exception:  # a bug must not kill the worker loop
                log.exception("sweeper failed")
            await asyncio.sleep(self.interval_s)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pushgw-maintenance")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
