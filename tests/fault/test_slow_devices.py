"""Fault 5b: devices that read nothing.

They say hello and then never read their socket again (no pushes read, no
pongs).  The shard's memory stays bounded (at most ``drain_window`` pushes
in flight per device), the keepalive drops them, their pushes wait in the
store, and all of them arrive once the devices reconnect properly; healthy
devices on the same shards are served throughout.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import websockets

from connection_server import frames as f
from connection_server.client import DeviceClient
from tests.fault.sizes import size
from tests.fault.support import (
    BUNDLE,
    Cluster,
    Device,
    Ledger,
    Sender,
    ensure_services,
    eventually,
    presence_count,
    report,
    settle,
    store_rows,
)

HEALTHY = size("slow_healthy_devices", 6)
SLOW = size("slow_devices", 6)
PUSHES = size("slow_pushes", 100)  # per slow device, each with a ~3 KB payload
WINDOW = 16


@pytest.fixture
async def keepalive_cluster(pg_dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    c = Cluster(pg_dsn, redis_url, tmp_path, worker=True, PUSHGW_WS_PING_INTERVAL_S="1",
                PUSHGW_WS_PING_TIMEOUT_S="1", PUSHGW_DRAIN_WINDOW=str(WINDOW))  # fmt: skip
    try:
        await c.start()
        yield c
    finally:
        await c.close()
        await ensure_services()


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _mute_device(cluster: Cluster, dev: Device, n: int) -> websockets.ClientConnection:
    """Hello on shard ``n % K``, then never read again."""
    url = cluster.shard_urls()[n % len(cluster.shards)]
    ws = await websockets.connect(url, ping_interval=None, max_size=None)
    await ws.send(f.encode(f.Hello(device_id=dev.device_id, secret=dev.secret)).decode())
    assert isinstance(f.decode_server(await ws.recv()), f.Welcome)
    ws.transport.pause_reading()
    return ws


async def test_devices_that_read_nothing_are_dropped_and_lose_nothing(
    keepalive_cluster: Cluster, redis_url: str
) -> None:
    cluster = keepalive_cluster
    healthy = await cluster.add_devices(HEALTHY)
    slow = await cluster.add_devices(SLOW)
    for d in slow:  # replace their SDK by a socket that never reads
        assert d.client is not None
        await d.client.stop()
    mutes = [await _mute_device(cluster, d, i) for i, d in enumerate(slow)]
    pids = [s.proc.pid for s in cluster.shards if s.proc is not None]
    rss_before = sum(_rss_kib(p) for p in pids)

    ledger = Ledger()
    sender = Sender(cluster, ledger, healthy, concurrency=2)
    sender.start()
    slow_ids: list[str] = []
    filler = "x" * 3000
    try:
        async with aiohttp.ClientSession(headers={"X-API-Key": cluster.api_key}) as http:
            for i in range(PUSHES * SLOW):
                d = slow[i % SLOW]
                apns_id = str(uuid.uuid4())
                body = {"token": d.token, "topic": BUNDLE, "apns_id": apns_id,
                        "payload": {"aps": {"alert": "slow"}, "fill": filler}}  # fmt: skip
                async with http.post(f"http://127.0.0.1:{cluster.rest}/api/v1/send", json=body) as r:
                    assert r.status == 200, await r.text()
                slow_ids.append(apns_id)
        grown_kib = sum(_rss_kib(p) for p in pids) - rss_before
        # The keepalive (1 s ping, 1 s timeout) drops every mute device.
        for _ in range(100):
            if await presence_count(redis_url, slow) == 0:
                break
            await asyncio.sleep(0.1)
        dropped = await presence_count(redis_url, slow) == 0
    finally:
        await sender.stop()
    for ws in mutes:
        ws.transport.abort()
    assert dropped, "the shard kept devices that read nothing"
    rows = await store_rows(cluster.pg_dsn)
    waiting = sum(rows[i][0] == "pending" for i in slow_ids)
    assert waiting == len(slow_ids), "a push to a device that never read it counted as delivered"

    # The devices come back with a working SDK: everything arrives.
    for i, d in enumerate(slow):
        k = i % len(cluster.shards)
        urls = cluster.shard_urls()
        d.client = DeviceClient(urls[k:] + urls[:k], d.device_id, d.secret,
                                on_push=lambda p, d=d: d.got.append(p.apns_id), backoff_min_s=0.05)  # fmt: skip
        d.client.start()
    await eventually(lambda: set(slow_ids) <= {x for d in slow for x in d.got}, 30,
                     "the slow devices' pushes after reconnect")  # fmt: skip
    ledger.accepted.update(slow_ids)
    tallies = await settle(cluster, ledger, timeout=20)
    report("slow-devices", tallies, healthy=HEALTHY, slow=SLOW, pushes_per_slow=PUSHES, window=WINDOW,
           shard_rss_growth_kib=grown_kib)  # fmt: skip
    # Bounded: at most WINDOW frames of ~3 KB per mute device are held by a shard.
    assert grown_kib < 8 * 1024 + SLOW * WINDOW * 4, f"shards grew {grown_kib} KiB"
    assert tallies["lost"] == [], f"accepted, never delivered (store status {tallies['lost_store_status']})"
    assert tallies["app_duplicates"] == 0
    assert tallies["not_delivered_in_store"] == []
