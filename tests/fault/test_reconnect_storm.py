"""Fault 5a: every device drops at once and reconnects at once (a reconnect storm), twice, while pushes flow."""

from __future__ import annotations

import asyncio
import time

from tests.fault.sizes import size
from tests.fault.support import Cluster, Ledger, Sender, eventually, report, settle

DEVICES = size("storm_devices", 40)
STORMS = 2


async def test_reconnect_storm_loses_nothing(cluster: Cluster) -> None:
    devs = await cluster.add_devices(DEVICES)
    ledger = Ledger()
    sender = Sender(cluster, ledger, devs, concurrency=4)
    recoveries: list[float] = []
    sender.start()
    try:
        await asyncio.sleep(0.5)
        for _ in range(STORMS):
            before = {d.device_id: d.client.connects for d in devs}
            t0 = time.monotonic()
            await asyncio.gather(*(d.client.drop() for d in devs))
            await eventually(lambda b=before: all(d.client.connected and d.client.connects > b[d.device_id]
                                                  for d in devs), 60, "every device reconnected")  # fmt: skip
            recoveries.append(time.monotonic() - t0)
            await asyncio.sleep(0.5)
    finally:
        await sender.stop()
    assert not ledger.unanswered
    tallies = await settle(cluster, ledger, timeout=20)
    report("reconnect-storm", tallies, devices=DEVICES, storms=STORMS,
           all_reconnected_s=[round(r, 2) for r in recoveries])  # fmt: skip
    assert tallies["accepted"] > 50
    assert tallies["lost"] == [], f"accepted, never delivered (store status {tallies['lost_store_status']})"
    assert tallies["app_duplicates"] == 0
    assert tallies["not_delivered_in_store"] == []
    assert tallies["multi_rows"] == []
