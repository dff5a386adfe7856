"""Fault 2: SIGKILL of the provider-api process while requests are in flight.

Every request answered 200 is delivered; requests left without an answer are
retried by the client with the same apns-id and are neither stored nor
delivered twice.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.fault.sizes import size
from tests.fault.support import Cluster, Ledger, Sender, report, settle

DEVICES = size("api_kill_devices", 8)
KILLS = 2


async def test_provider_api_sigkill_answered_means_delivered(cluster: Cluster) -> None:
    devs = await cluster.add_devices(DEVICES)
    ledger = Ledger()
    sender = Sender(cluster, ledger, devs, concurrency=8, pause_s=0.0)
    recoveries: list[float] = []
    sender.start()
    try:
        for _ in range(KILLS):
            await asyncio.sleep(0.7)
            t0 = time.monotonic()
            assert cluster.api.kill() == -9
            await asyncio.sleep(0.3)  # requests fail while nothing listens
            await cluster.restart(cluster.api)
            recoveries.append(time.monotonic() - t0)
        await asyncio.sleep(0.5)
    finally:
        await sender.stop()
    unanswered = len(ledger.unanswered)
    assert unanswered > 0, "the kill should hit requests in flight"
    await sender.retry_unanswered()

    # A resend of answered requests (same apns-id) is a duplicate: answered 200, stored and delivered once.
    again = sorted(ledger.accepted)[:20]
    by_id = {}
    async with aiohttp.ClientSession(headers={"X-API-Key": cluster.api_key}) as http:
        for apns_id in again:
            dev = next(d for d in devs if apns_id in d.got) if any(apns_id in d.got for d in devs) else devs[0]
            by_id[apns_id] = await sender.send_one(http, dev, apns_id)
    assert set(by_id.values()) == {200}

    tallies = await settle(cluster, ledger)
    report("provider-api-sigkill", tallies, kills=KILLS, unanswered_then_retried=unanswered,
           recovery_s=[round(r, 2) for r in recoveries])  # fmt: skip
    # A lost id here is answered 200 and still pending in the store while its device stays connected.
    assert tallies["lost"] == [], f"accepted, never delivered (store status {tallies['lost_store_status']})"
    assert tallies["app_duplicates"] == 0
    assert tallies["wire_duplicates"] == 0, "no shard fault here: a retried apns-id must not be pushed twice"
    assert tallies["multi_rows"] == []
    assert tallies["not_delivered_in_store"] == []
