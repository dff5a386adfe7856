"""Background budget and Live Activity order through a real shard process
(the session's Admit action, the store's admission, the statuses)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from connection_server.simulate import provision
from gateway.config import Config
from gateway.runtime import Core
from schemas.notification import Environment, Status
from tests.integration.test_delivery_support import BUNDLE, Inbox, ShardProcess, eventually, notification

BACKGROUND = b'{"aps":{"content-available":1}}'


@pytest.fixture
async def core(pg_dsn: str, redis_url: str) -> AsyncIterator[Core]:
    core = await Core.open(Config(database_url=pg_dsn, redis_url=redis_url, shard_id="provider"))
    try:
        yield core
    finally:
        await core.close()


@pytest.fixture
async def shard(core: Core, pg_dsn: str, redis_url: str) -> AsyncIterator[ShardProcess]:
    # No power window: each push is admitted as it arrives, so the order is the test's.
    proc = ShardProcess("adm", pg_dsn, redis_url, PUSHGW_POWER_WINDOW_MS="0", PUSHGW_BACKGROUND_BUDGET_PER_HOUR="2")
    try:
        yield await proc.ready()
    finally:
        proc.stop("KILL")


async def _settled(core: Core, app_id: int, apns_id: str, status: Status) -> str | None:
    async with asyncio.timeout(15):
        while True:
            st = await core.store.status(app_id, apns_id)
            if st is not None and st.status is status:
                return st.reason
            await asyncio.sleep(0.05)


async def test_background_budget_delivers_two_and_keeps_the_newest(core: Core, shard: ShardProcess) -> None:
    [dev] = await provision(core.store, BUNDLE, 1)
    async with Inbox(shard.url, dev) as inbox:
        first = [notification(dev, i, push_type="background", priority=5, payload=BACKGROUND) for i in range(2)]
        for n in first:
            await core.engine.accept(n)
        await eventually(lambda: len(inbox.ids) == 2, what="the budget's two background pushes")
        over = [notification(dev, i, push_type="background", priority=5, payload=BACKGROUND) for i in (3, 4)]
        for n in over:
            await core.engine.accept(n)
        assert await _settled(core, dev.app_id, over[0].apns_id, Status.SUPERSEDED) == "BackgroundBudget"
        # The newest waits for the budget (pending, an hour from the first sends); nothing else arrived.
        st = await core.store.status(dev.app_id, over[1].apns_id)
        assert st is not None and st.status is Status.PENDING
        assert inbox.ids == [n.apns_id for n in first]


def _activity(dev, token: str, n: int, event: str, ts: int):  # type: ignore[no-untyped-def]
    aps = {"event": event, "timestamp": ts, "content-state": {"n": n}}
    return notification(
        dev, n, token=token, topic=BUNDLE + ".push-type.liveactivity", push_type="liveactivity",
        payload=json.dumps({"aps": aps}).encode(),
    )  # fmt: skip


async def test_live_activity_stale_and_after_end_never_reach_the_device(core: Core, shard: ShardProcess) -> None:
    [dev] = await provision(core.store, BUNDLE, 1)
    la = await core.store.issue_token(dev.device_id, BUNDLE + ".push-type.liveactivity", Environment.PRODUCTION)
    async with Inbox(shard.url, dev) as inbox:
        update = _activity(dev, la.token, 1, "update", 100)
        await core.engine.accept(update)
        await eventually(lambda: inbox.ids == [update.apns_id])
        stale = _activity(dev, la.token, 2, "update", 90)
        await core.engine.accept(stale)
        assert await _settled(core, dev.app_id, stale.apns_id, Status.STALE) == "StaleTimestamp"
        end = _activity(dev, la.token, 3, "end", 120)
        await core.engine.accept(end)
        await eventually(lambda: inbox.ids == [update.apns_id, end.apns_id])
        late = _activity(dev, la.token, 4, "update", 130)
        await core.engine.accept(late)
        assert await _settled(core, dev.app_id, late.apns_id, Status.ACTIVITY_ENDED) == "ActivityEnded"
        assert inbox.ids == [update.apns_id, end.apns_id]
