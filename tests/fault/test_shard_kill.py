"""Fault 1: SIGKILL of a connection shard, repeated, while pushes flow."""

from __future__ import annotations

import asyncio
import time

from tests.fault.sizes import size
from tests.fault.support import Cluster, Ledger, Sender, eventually, report, settle

DEVICES = size("shard_kill_devices", 16)
KILLS = 3


async def test_repeated_shard_sigkill_loses_nothing(cluster: Cluster) -> None:
    devs = await cluster.add_devices(DEVICES)
    ledger = Ledger()
    sender = Sender(cluster, ledger, devs, concurrency=4)
    recoveries: list[float] = []
    sender.start()
    try:
        await asyncio.sleep(1.0)
        for k in range(KILLS):
            victim = cluster.shards[k % 2]
            t0 = time.monotonic()
            assert victim.kill() == -9
            # Every device ends up on the surviving shard, connected again.
            survivor = cluster.shard_urls()[(k + 1) % 2]
            await eventually(lambda s=survivor: all(d.client.connected and d.client.url == s for d in devs), 20,
                             "devices on the other shard")  # fmt: skip
            recoveries.append(time.monotonic() - t0)
            await asyncio.sleep(0.3)  # pushes keep flowing to the moved devices
            await cluster.restart(victim)
            await asyncio.sleep(0.3)
    finally:
        await sender.stop()
    assert not ledger.unanswered, "the provider API is untouched here: every request gets an answer"
    tallies = await settle(cluster, ledger)
    report("shard-sigkill", tallies, kills=KILLS, recovery_s=[round(r, 2) for r in recoveries])
    assert tallies["accepted"] > 100
    assert tallies["lost"] == []
    assert tallies["app_duplicates"] == 0
    assert tallies["not_delivered_in_store"] == []
    assert tallies["multi_rows"] == []
