"""Route repair: a committed push whose doorbell never rang still reaches a
device that stays connected (the accepting process died between commit and
publish; a provider retry of the same apns-id arrives as a duplicate)."""

from __future__ import annotations

import asyncio
import time

from gateway.workers import RouteRepair
from tests.integration.test_delivery import one_device, shard, url  # noqa: F401 - fixture
from tests.integration.test_delivery_support import Inbox, eventually, notification


async def test_unrouted_commit_is_delivered_by_the_repair_scan(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    async with Inbox(url(server), dev) as inbox:
        await _connect_drain_over(server, dev.device_id)
        # Commit straight into the store: what an API process leaves behind
        # when it dies after the commit and before routing.
        n = notification(dev, 1)
        await core.store.accept(n)
        await asyncio.sleep(0.3)
        assert inbox.ids == []  # no doorbell: a connected device would wait forever
        repair = RouteRepair(core.store, core.engine, delay_ms=0, lookback_ms=60_000)
        assert await repair.scan_once(int(time.time() * 1000) + 1) == 1
        await eventually(lambda: inbox.ids == [n.apns_id], what="repaired push arrives")
        # The next scan starts where this one ended: nothing is rung twice.
        assert await repair.scan_once(int(time.time() * 1000) + 2) == 0


async def test_retry_of_an_unrouted_apns_id_rings_the_device(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    async with Inbox(url(server), dev) as inbox:
        await _connect_drain_over(server, dev.device_id)
        n = notification(dev, 2)
        await core.store.accept(n)  # committed, never routed (the API died)
        await asyncio.sleep(0.3)
        assert inbox.ids == []
        again = await core.engine.accept(n)  # the provider retries with the same apns-id
        assert again.duplicate
        await eventually(lambda: inbox.ids == [n.apns_id], what="retried push arrives once")
        await asyncio.sleep(0.3)
        assert inbox.ids == [n.apns_id]


async def test_scheduled_push_reaches_a_connected_device_when_due(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    async with Inbox(url(server), dev) as inbox:
        await _connect_drain_over(server, dev.device_id)
        due_ms = int(time.time() * 1000) + 800
        n = notification(dev, 3, deliver_at_ms=due_ms)
        await core.engine.accept(n)
        repair = RouteRepair(core.store, core.engine, delay_ms=0, lookback_ms=60_000)
        await repair.scan_once()
        await asyncio.sleep(0.3)
        assert inbox.ids == []  # not before its time
        await asyncio.sleep(max(0.0, due_ms / 1000 - time.time()) + 0.05)
        await repair.scan_once()
        await eventually(lambda: inbox.ids == [n.apns_id], what="scheduled push arrives when due")


class _RedisDown:
    """An engine whose rings go nowhere: what a ring meets while Redis restarts."""

    def __init__(self) -> None:
        self.lost: list[str] = []

    def ring_devices(self, device_ids: list[str]) -> None:
        self.lost.extend(device_ids)


async def test_a_lost_ring_is_rung_again_when_the_row_is_older(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    async with Inbox(url(server), dev) as inbox:
        await _connect_drain_over(server, dev.device_id)
        n = notification(dev, 4)
        await core.store.accept(n)  # committed, its doorbell lost
        down = _RedisDown()
        repair = RouteRepair(core.store, down, delay_ms=0, retry_ages_ms=(15_000,), lookback_ms=60_000)
        start = int(time.time() * 1000) + 1
        assert await repair.scan_once(start) == 1 and down.lost == [dev.device_id]
        await asyncio.sleep(0.3)
        assert inbox.ids == []  # the ring was lost as well
        repair.engine = core.engine  # Redis is back
        assert await repair.scan_once(start + 5_000) == 0  # not yet old enough for the second look
        assert await repair.scan_once(start + 15_001) == 1
        await eventually(lambda: inbox.ids == [n.apns_id], what="push arrives on the second ring")
        assert await repair.scan_once(start + 16_000) == 0  # each age looks at a row once


async def _connect_drain_over(server, device_id: str) -> None:  # type: ignore[no-untyped-def]
    """Rows committed below must not be found by the device's connect drain (the
    drain would deliver them and hide what the repair does): wait until it is over."""

    def over() -> bool:
        conn = server._conns.get(device_id)
        return conn is not None and not conn.session.draining

    await eventually(over, what="the connect drain is over")
