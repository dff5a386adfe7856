"""Battery-first delivery on real shard processes (PostgreSQL, Redis, sockets):
wake-ups per device for a mixed workload, held pushes surviving a killed
shard, v1 clients, quiet hours set over the protocol."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from connection_server.simulate import provision
from gateway.config import Config
from gateway.runtime import Core
from schemas.notification import Status
from tests.integration.test_delivery_support import BUNDLE, Inbox, ShardProcess, eventually, notification

#: Long enough that the test's accepts all land inside one window even on a
#: busy machine; the assertions count wake-ups, never durations.
WINDOW_MS = "3000"


async def connect_drain_over() -> None:
    """The welcome comes before the connect drain's read, and that drain is a burst
    (connecting woke the radio): rows committed before the read returns ride along.
    The shard is another process (a fresh one prepares its statements on that first
    read), so the tests give the empty read time to finish before they commit rows."""
    await asyncio.sleep(1.0)


@pytest.fixture
async def core(pg_dsn: str, redis_url: str) -> AsyncIterator[Core]:
    core = await Core.open(Config(database_url=pg_dsn, redis_url=redis_url, shard_id="provider"))
    try:
        yield core
    finally:
        await core.close()


@pytest.fixture
async def shard(core: Core, pg_dsn: str, redis_url: str) -> AsyncIterator[ShardProcess]:
    proc = ShardProcess("p", pg_dsn, redis_url, PUSHGW_POWER_WINDOW_MS=WINDOW_MS)
    try:
        yield await proc.ready()
    finally:
        proc.stop("KILL")


async def test_mixed_workload_costs_one_wake_up_per_burst(core: Core, shard: ShardProcess) -> None:
    [dev] = await provision(core.store, BUNDLE, 1)
    async with Inbox(shard.url, dev) as inbox:
        await connect_drain_over()
        # Three priority-5 pushes wait; a priority-10 push takes them along.
        held = [notification(dev, i, priority=5) for i in range(3)]
        for n in held:
            await core.engine.accept(n)
        urgent = notification(dev, 10)
        await core.engine.accept(urgent)
        await eventually(lambda: len(inbox.ids) == 4, what="the priority-10 burst")
        assert inbox.ids == [urgent.apns_id, *(n.apns_id for n in held)]
        assert inbox.client.wakeups == 1
        # Two priority-5 and a priority-1 push (the device is awake): one window burst.
        later = [
            notification(dev, 20, priority=5),
            notification(dev, 21, priority=1),
            notification(dev, 22, priority=5),
        ]
        for n in later:
            await core.engine.accept(n)
        await eventually(lambda: len(inbox.ids) == 7, timeout=20, what="the power-window burst")
        assert inbox.ids[4:] == [later[0].apns_id, later[2].apns_id, later[1].apns_id]  # priority order
        assert inbox.client.wakeups == 2  # 7 pushes, 2 wake-ups


async def test_v1_client_gets_bursts_as_push_frames(core: Core, shard: ShardProcess) -> None:
    [dev] = await provision(core.store, BUNDLE, 1)
    async with Inbox(shard.url, dev, protocol_version=1) as inbox:
        await connect_drain_over()
        held = notification(dev, 1, priority=5)
        await core.engine.accept(held)
        urgent = notification(dev, 2)
        await core.engine.accept(urgent)
        await eventually(lambda: len(inbox.ids) == 2)
        assert inbox.ids == [urgent.apns_id, held.apns_id]
        assert inbox.client.wakeups == 2  # v1: two push frames (written to the socket together)


async def test_killed_shard_loses_no_held_push(core: Core, pg_dsn: str, redis_url: str) -> None:
    # A window far longer than the test: only the reconnect can deliver them.
    a = await ShardProcess("a", pg_dsn, redis_url, PUSHGW_POWER_WINDOW_MS="600000").ready()
    b = await ShardProcess("b", pg_dsn, redis_url, PUSHGW_POWER_WINDOW_MS="600000").ready()
    [dev] = await provision(core.store, BUNDLE, 1)
    try:
        async with Inbox([a.url, b.url], dev, backoff_min_s=0.05) as inbox:
            await connect_drain_over()
            held = [notification(dev, i, priority=5) for i in range(3)]
            for n in held:
                await core.engine.accept(n)
            await core.engine.flush()
            await asyncio.sleep(0.3)  # let shard a receive the doorbells and hold them
            assert inbox.ids == []
            assert a.stop("KILL") == -9
            await eventually(lambda: len(inbox.ids) == 3, timeout=20, what="held pushes after reconnect")
            assert inbox.client.url == b.url
            assert sorted(inbox.ids) == sorted(n.apns_id for n in held)
            assert inbox.client.wakeups == 1  # the reconnect drain is one burst
            for n in held:
                await _delivered(core, dev.app_id, n.apns_id)
    finally:
        a.stop("KILL")
        b.stop("KILL")


async def _delivered(core: Core, app_id: int, apns_id: str) -> None:
    async with asyncio.timeout(15):
        while True:
            st = await core.store.status(app_id, apns_id)
            if st is not None and st.status is Status.DELIVERED:
                return
            await asyncio.sleep(0.05)


async def test_quiet_hours_set_over_the_protocol_hold_alerts(core: Core, shard: ShardProcess) -> None:
    [dev] = await provision(core.store, BUNDLE, 1)
    async with Inbox(shard.url, dev) as inbox:
        # Quiet all day except the minute before now's: in force right now, whatever the clock says.
        now = dt.datetime.now(dt.UTC)
        start = (now - dt.timedelta(minutes=1)).strftime("%H:%M")
        end = (now - dt.timedelta(minutes=2)).strftime("%H:%M")
        reply = await inbox.client.set_quiet_hours(start, end, "UTC")
        assert (reply.start, reply.end, reply.tz) == (start, end, "UTC")
        assert await core.store.get_quiet_hours(dev.device_id) is not None
        quiet = notification(dev, 1)
        urgent = notification(dev, 2, payload=b'{"aps":{"alert":"x","interruption-level":"critical"}}')
        await core.engine.accept(quiet)
        await core.engine.accept(urgent)
        await eventually(lambda: inbox.ids == [urgent.apns_id], what="the critical alert")
        # Clearing the quiet hours releases the held alert.
        await inbox.client.set_quiet_hours(None)
        await eventually(lambda: inbox.ids == [urgent.apns_id, quiet.apns_id], what="the held alert")
