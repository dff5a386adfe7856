"""Fault 5: devices that never ack get their pushes again on every reconnect, until they ack."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

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


CAP = size("no_ack_backlog_cap", 5)
EXTRA = size("no_ack_backlog_extra", 4)  # pushes past the cap, per device


@pytest.fixture
async def capped_cluster(pg_dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(pg_dsn, redis_url, tmp_path, worker=True, PUSHGW_BACKLOG_CAP=str(CAP))
    try:
        await c.start()
        yield c
    finally:
        await c.close()


async def test_backlog_cap_applies_to_devices_that_never_ack(capped_cluster: Cluster) -> None:
    """DESIGN.md 7: a device that never acks keeps at most ``backlog_cap`` pending; the oldest past
    the cap are ``dropped``, the device is told once on reconnect, and only the newest come again."""
    cluster = capped_cluster
    devs = await cluster.add_devices(DEVICES, ack_delay_s=3600.0)
    ledger = Ledger()
    sender = Sender(cluster, ledger, devs)
    sent: dict[str, list[str]] = {d.device_id: [] for d in devs}
    async with aiohttp.ClientSession(headers={"X-API-Key": cluster.api_key}) as http:
        for _ in range(CAP + EXTRA):  # one at a time: acceptance order is send order
            for d in devs:
                apns_id = str(uuid.uuid4())
                assert await sender.send_one(http, d, apns_id) == 200
                sent[d.device_id].append(apns_id)
    await eventually(lambda: all(len(d.got) == CAP + EXTRA for d in devs), 15, "live deliveries")
    rows = await store_rows(cluster.pg_dsn)
    for d in devs:
        ids = sent[d.device_id]
        assert [rows[i][0] for i in ids] == ["dropped"] * EXTRA + ["pending"] * CAP, "oldest past the cap dropped"

    for d in devs:
        assert d.client is not None
        await d.client.drop()
    await eventually(lambda: all(d.client.duplicates == CAP for d in devs), 20, "the newest CAP again")
    await eventually(lambda: all(d.overflows == [EXTRA] for d in devs), 10, "told of the drop")
    for d in devs:  # a second reconnect: the same CAP again, no second overflow signal
        await d.client.drop()
    await eventually(lambda: all(d.client.duplicates == 2 * CAP for d in devs), 20, "the newest CAP again")
    for d in devs:
        d.client.ack_delay_s = 0.005
        await d.client.drop()
    await eventually(lambda: all(d.client.duplicates == 3 * CAP for d in devs), 20, "acked at last")
    await eventually(lambda: cluster.all_connected(), 20, "reconnected")
    kept = [i for d in devs for i in sent[d.device_id][EXTRA:]]
    for _ in range(50):  # the acks reach the store
        rows = await store_rows(cluster.pg_dsn)
        if all(rows[i][0] == "delivered" for i in kept):
            break
        await asyncio.sleep(0.2)
    assert [i for i in kept if rows[i][0] != "delivered"] == [], "the acked newest rows are delivered"
    for d in devs:
        await d.client.drop()
    await eventually(lambda: cluster.all_connected(), 20, "reconnected")
    await asyncio.sleep(1.0)
    dropped = sum(1 for d in devs for i in sent[d.device_id] if rows[i][0] == "dropped")
    report("never-ack-backlog-cap", {"sent": ledger.attempts, "accepted": len(ledger.accepted),
                                     "dropped_by_cap": dropped, "wire_duplicates": Ledger.wire_duplicates(devs)},
           cap=CAP)  # fmt: skip
    assert all(d.client.duplicates == 3 * CAP for d in devs), "acked pushes must not come again"
    assert all(d.overflows == [EXTRA] for d in devs), "the overflow is told once"
    assert dropped == EXTRA * DEVICES
