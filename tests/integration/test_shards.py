"""Two shard processes (`python -m connection_server`), real PostgreSQL and Redis.

The test process plays the provider: it accepts notifications through its own
Core (engine -> store commit -> presence lookup -> Redis publish).
"""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
from collections.abc import AsyncIterator, Sequence

import pytest

from connection_server import frames as f
from connection_server.client import DeviceClient
from connection_server.simulate import SimDevice, provision
from gateway.config import Config
from gateway.runtime import Core
from schemas.notification import Status
from tests.integration.test_delivery_support import BUNDLE, Inbox, ShardProcess, eventually, notification


@pytest.fixture
async def cluster(pg_dsn: str, redis_url: str) -> AsyncIterator[tuple[Core, ShardProcess, ShardProcess]]:
    # The provider-side core migrates the database before the shards start.
    core = await Core.open(Config(database_url=pg_dsn, redis_url=redis_url, shard_id="provider"))
    a = ShardProcess("a", pg_dsn, redis_url)
    b = ShardProcess("b", pg_dsn, redis_url)
    try:
        await asyncio.gather(a.ready(), b.ready())
        yield core, a, b
    finally:
        for shard in (a, b):
            shard.stop("KILL")
        await core.close()


async def all_delivered(core: Core, devs: Sequence[SimDevice], apns_ids: Sequence[str], timeout: float = 15) -> None:
    app_id = devs[0].app_id
    waiting = list(apns_ids)
    async with asyncio.timeout(timeout):
        while waiting:
            st = await core.store.status(app_id, waiting[-1])
            if st is not None and st.status is Status.DELIVERED:
                waiting.pop()
            else:
                await asyncio.sleep(0.05)


async def test_online_delivery_through_a_shard_process(cluster) -> None:  # type: ignore[no-untyped-def]
    core, a, _ = cluster
    [dev] = await provision(core.store, BUNDLE, 1)
    async with Inbox(a.url, dev) as inbox:
        n = notification(dev, 1)
        await core.engine.accept(n)
        await eventually(lambda: inbox.ids == [n.apns_id])
        await all_delivered(core, [dev], [n.apns_id])


async def test_ghosting_across_shards(cluster) -> None:  # type: ignore[no-untyped-def]
    core, a, b = cluster
    [dev] = await provision(core.store, BUNDLE, 1)
    first = DeviceClient(a.url, dev.device_id, dev.secret, backoff_min_s=30)
    first.start()
    await first.wait_connected()
    async with Inbox(b.url, dev) as second:
        await eventually(lambda: first.last_close_code == f.Close.REPLACED, what="shard a closed the older socket")
        n = notification(dev, 1)
        await core.engine.accept(n)
        await eventually(lambda: second.ids == [n.apns_id])
    await first.stop()


async def test_sigkill_shard_with_unacked_pushes_loses_nothing(cluster) -> None:  # type: ignore[no-untyped-def]
    core, a, b = cluster
    devs = await provision(core.store, BUNDLE, 10)
    # Acks held back for a minute: everything the devices get from shard a stays unacked.
    inboxes = [Inbox([a.url, b.url], d, ack_delay_s=60.0, backoff_min_s=0.05) for d in devs]
    for box in inboxes:
        await box.__aenter__()
    try:
        sent = {d.device_id: [] for d in devs}
        for i in range(5):
            for d in devs:
                n = notification(d, i)
                sent[d.device_id].append(n.apns_id)
                await core.engine.accept(n)
        await eventually(lambda: all(len(box.ids) == 5 for box in inboxes), what="first deliveries")
        assert a.stop("KILL") == -9
        for box in inboxes:
            box.client.ack_delay_s = 0.005
        await eventually(lambda: all(box.client.connected and box.client.url == b.url for box in inboxes), 20)
        for d in devs:
            n = notification(d, 99)
            sent[d.device_id].append(n.apns_id)
            await core.engine.accept(n)
        await eventually(lambda: all(len(box.ids) == 6 for box in inboxes), what="all pushes after failover")
        for d, box in zip(devs, inboxes, strict=True):
            assert sorted(box.ids) == sorted(sent[d.device_id])
            assert box.client.duplicates >= 5  # the unacked ones came again and were dropped by id
        await all_delivered(core, devs, [i for ids in sent.values() for i in ids])
    finally:
        for box in inboxes:
            await box.__aexit__()


async def _restart_redis() -> None:
    port, binary, data = os.environ["TEST_REDIS_PORT"], os.environ["TEST_REDIS_BIN"], os.environ["TEST_REDIS_DIR"]
    await asyncio.to_thread(subprocess.run, ["redis-cli", "-p", port, "shutdown", "nosave"], capture_output=True)
    await asyncio.sleep(0.5)
    await asyncio.to_thread(
        subprocess.run,
        [binary, "--port", port, "--bind", "127.0.0.1", "--save", "", "--daemonize", "yes",
         "--pidfile", f"{data}/redis.pid", "--dir", data, "--logfile", f"{data}/log"],
        check=True,
    )  # fmt: skip


async def test_redis_restart_mid_stream_loses_nothing(cluster) -> None:  # type: ignore[no-untyped-def]
    core, a, b = cluster
    devs = await provision(core.store, BUNDLE, 6)
    inboxes = [Inbox(a.url if i % 2 else b.url, d) for i, d in enumerate(devs)]
    for box in inboxes:
        await box.__aenter__()
    try:
        sent: list[str] = []
        for i in range(150):
            if i == 50:
                await _restart_redis()
            d = devs[i % len(devs)]
            n = notification(d, i)
            sent.append(n.apns_id)
            await core.engine.accept(n)
            await asyncio.sleep(0.01)
        got = lambda: sorted(i for box in inboxes for i in box.ids)  # noqa: E731
        await eventually(lambda: got() == sorted(sent), 20, what="every push after the Redis restart")
        await all_delivered(core, devs, sent)
        assert all(box.client.connects == 1 for box in inboxes)  # sockets survived; the store repaired it
    finally:
        for box in inboxes:
            await box.__aexit__()


async def test_no_race_between_reconnects_and_pushes(cluster) -> None:  # type: ignore[no-untyped-def]
    core, a, b = cluster
    devs = await provision(core.store, BUNDLE, 5)
    inboxes = [Inbox([a.url, b.url], d, backoff_min_s=0.005, backoff_max_s=0.05) for d in devs]
    for box in inboxes:
        await box.__aenter__()
    stop = asyncio.Event()

    async def churn(box: Inbox) -> None:
        rng = random.Random(box.client.device_id)
        while not stop.is_set():
            await asyncio.sleep(rng.uniform(0.01, 0.08))
            await box.client.drop()

    churners = [asyncio.create_task(churn(box)) for box in inboxes]
    try:
        sent: list[str] = []
        for i in range(300):
            d = devs[i % len(devs)]
            n = notification(d, i)
            sent.append(n.apns_id)
            await core.engine.accept(n)
            await asyncio.sleep(0.005)
        stop.set()
        await asyncio.gather(*churners)
        got = lambda: sorted(i for box in inboxes for i in box.ids)  # noqa: E731
        await eventually(lambda: got() == sorted(sent), 20, what="every push despite reconnects")
        assert sum(box.client.connects for box in inboxes) > 20  # the loop really reconnected
        await all_delivered(core, devs, sent)
    finally:
        stop.set()
        for box in inboxes:
            await box.__aexit__()
