"""The maintenance worker: expiry sweeper and retention purge, on a real store."""

from __future__ import annotations

import time

from gateway.workers import Maintenance
from schemas.notification import Status
from tests.contract.conftest import World


async def test_sweeper_expires_and_retention_purges(world: World) -> None:
    store = world.store
    now_s = int(time.time())
    late = await store.accept(world.note(expiration=now_s + 3 * 3600))
    due = await store.accept(world.note(expiration=now_s - 1))
    maint = Maintenance(store, retention_s=3600)
    expired, purged = await maint.sweep_once(now_ms=now_s * 1000)
    assert (expired, purged) == (1, 0)
    due_status = await store.status(world.app.app_id, due.apns_id)
    assert due_status is not None and due_status.status is Status.EXPIRED
    # Two hours later the terminal row is past retention and purged; the live one stays.
    _, purged = await maint.sweep_once(now_ms=(now_s + 7200) * 1000)
    assert purged == 1
    assert await store.status(world.app.app_id, due.apns_id) is None
    late_status = await store.status(world.app.app_id, late.apns_id)
    assert late_status is not None and late_status.status is Status.PENDING


async def test_retention_forgets_live_activity_order_after_retention(world: World) -> None:
    store, token = world.store, world.token
    now_ms = int(time.time()) * 1000
    assert await store.admit_live_activities([(1, token, "end", 100.0)], now_ms) == []
    maint = Maintenance(store, retention_s=3600)
    await maint.sweep_once(now_ms=now_ms + 1000)  # within retention: the end still holds
    assert await store.admit_live_activities([(2, token, "update", 200.0)], now_ms + 1000) == [2]
    await maint.sweep_once(now_ms=now_ms + 3601 * 1000)
    assert await store.admit_live_activities([(3, token, "update", 200.0)], now_ms + 3601 * 1000) == []
