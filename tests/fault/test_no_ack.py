"""Fault 5: devices that never ack get their pushes again on every reconnect, until they ack."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.fault.sizes import size
from tests.fault.support import Cluster, Ledger, Sender, eventually, report, settle, store_rows

DEVICES = size("no_ack_devices", 6)
PUSHES = size("no_ack_pushes", 10)  # per device


async def test_unacked_pushes_are_redelivered_on_reconnect(cluster: Cluster) -> None:
    devs = await cluster.add_devices(DEVICES, ack_delay_s=3600.0)  # never acks
    ledger = Ledger()
    sender = Sender(cluster, ledger, devs)
    async with aiohttp.ClientSession(headers={"X-API-Key": cluster.api_key}) as http:
        for i in range(PUSHES * DEVICES):
            import uuid

            assert await sender.send_one(http, devs[i % DEVICES], str(uuid.uuid4())) == 200
    await eventually(lambda: all(len(d.got) == PUSHES for d in devs), 15, "first deliveries")
    rows = await store_rows(cluster.pg_dsn)
    assert {rows[i][0] for i in ledger.accepted} == {"pending"}, "nothing acked, nothing delivered"

    for round_ in (1, 2):  # two reconnects without acks: everything comes again each time
        for d in devs:
            await d.client.drop()
        await eventually(
            lambda r=round_: all(d.client.duplicates == PUSHES * r for d in devs), 20, f"redelivery {round_}"
        )
    # Now the devices ack: the next reconnect brings nothing more.
    for d in devs:
        d.client.ack_delay_s = 0.005
        await d.client.drop()
    await eventually(lambda: all(d.client.duplicates == PUSHES * 3 for d in devs), 20, "redelivery 3")
    tallies = await settle(cluster, ledger)
    for d in devs:
        await d.client.drop()
    await eventually(lambda: cluster.all_connected(), 20, "reconnected")
    await asyncio.sleep(1.0)
    report("never-ack", tallies, reconnects=4)
    assert all(d.client.duplicates == PUSHES * 3 for d in devs), "acked pushes must not come again"
    assert tallies["lost"] == []
    assert tallies["app_duplicates"] == 0
    assert tallies["not_delivered_in_store"] == []
