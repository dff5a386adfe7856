"""Fault 3: Redis stopped for seconds and restarted, and Redis SIGKILLed and restarted empty.

Redis holds only presence and the doorbell channels (with --save '' both
restarts come back empty): delivery resumes, nothing accepted is lost, and
presence of every connected device is rebuilt.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp

from tests.fault.sizes import size
from tests.fault.support import (
    Cluster,
    Device,
    Ledger,
    Sender,
    ensure_services,
    eventually,
    presence_count,
    redis_kill,
    redis_start,
    redis_stop,
    report,
    settle,
)  # fmt: skip

DEVICES = size("redis_devices", 12)
DOWN_S = {"stop": 10.0, "kill": 1.0}  # the issue: "Redis stopped for 10 s"


async def test_redis_outages_lose_nothing(cluster: Cluster, redis_url: str) -> None:
    devs = await cluster.add_devices(DEVICES)
    assert await presence_count(redis_url, devs) == DEVICES
    for how in ("stop", "kill"):
        await _outage(cluster, redis_url, devs, how)


async def _outage(cluster: Cluster, redis_url: str, devs: list[Device], how: str) -> None:
    ledger = Ledger()
    sender = Sender(cluster, ledger, devs, concurrency=3, pause_s=0.02)
    sender.start()
    try:
        await asyncio.sleep(1.0)
        await (redis_stop() if how == "stop" else redis_kill())
        await asyncio.sleep(DOWN_S[how])  # pushes keep coming while Redis is away
        await redis_start()
        t_up = time.monotonic()
        # Presence rebuilds without any device reconnecting.
        presence_s = 0.0
        for _ in range(150):
            if await presence_count(redis_url, devs) == DEVICES:
                break
            await asyncio.sleep(0.1)
        presence_s = time.monotonic() - t_up
        await asyncio.sleep(0.5)
    finally:
        await sender.stop()
        await ensure_services()
    assert await presence_count(redis_url, devs) == DEVICES, "presence not rebuilt"
    # A fresh push to every device arrives at once: routing works again (not only the drain).
    probe = {}
    t0 = time.monotonic()
    async with aiohttp.ClientSession(headers={"X-API-Key": cluster.api_key}) as http:
        for d in devs:
            probe[d.device_id] = str(uuid.uuid4())
            assert await sender.send_one(http, d, probe[d.device_id]) == 200
    await eventually(lambda: all(probe[d.device_id] in d.got for d in devs), 10, "probe pushes")
    probe_s = time.monotonic() - t0
    tallies = await settle(cluster, ledger)
    report(f"redis-{how}", tallies, down_s=DOWN_S[how], presence_rebuilt_s=round(presence_s, 2),
           probe_roundtrip_s=round(probe_s, 2), reconnects=sum(d.client.connects - 1 for d in devs))  # fmt: skip
    assert not ledger.unanswered
    assert tallies["accepted"] > 50
    assert tallies["lost"] == [], f"accepted, never delivered (store status {tallies['lost_store_status']})"
    assert tallies["app_duplicates"] == 0
    assert tallies["not_delivered_in_store"] == []
