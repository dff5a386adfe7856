"""`pushgw cluster --shards 2` (docs/deploy.md): the cluster topology as processes.

Runs the real command against the throwaway PostgreSQL and Redis, pushes
through the provider-api process to devices on both shard processes, and
checks that SIGTERM stops every child it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import aiohttp

from connection_server.client import DeviceClient
from tests.fault.support import port_block

TEAM = "CLUSTERT01"
BUNDLE = "com.example.cluster"


def _cli(env: dict[str, str], *args: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run([sys.executable, "-m", "gateway.cli", *args], env=env, check=True, capture_output=True)
    return json.loads(out.stdout)


async def _wait_ready(url: str, deadline_s: float = 30) -> None:
    end = time.monotonic() + deadline_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < end:
            try:
                async with http.get(url) as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} not ready")


async def test_cluster_command_runs_the_topology(pg_dsn: str, redis_url: str) -> None:
    base = port_block(14)
    rest, ws, h2 = base, base + 2, base + 13
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGW_")}
    env.update(PUSHGW_DATABASE_URL=pg_dsn, PUSHGW_REDIS_URL=redis_url)
    subprocess.run([sys.executable, "-m", "gateway.cli", "migrate"], env=env, check=True, capture_output=True)  # noqa: ASYNC221
    _cli(env, "team", "create", "--team-id", TEAM)
    _cli(env, "app", "create", "--team-id", TEAM, "--bundle-id", BUNDLE)
    api_key = _cli(env, "apikey", "create", "--bundle-id", BUNDLE)["api_key"]

    cluster = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, stopped below by PID
        [sys.executable, "-m", "gateway.cli", "cluster", "--shards", "2",
         "--rest-port", str(rest), "--ws-port", str(ws), "--http2-port", str(h2)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    devices: list[DeviceClient] = []
    try:
        await _wait_ready(f"http://127.0.0.1:{rest}/readyz")
        for n in range(2):
            await _wait_ready(f"http://127.0.0.1:{rest + 10 + n}/healthz")
        await _wait_ready(f"http://127.0.0.1:{rest + 9}/healthz")
        children = psutil_children(cluster.pid)
        assert len(children) == 4, children  # provider-api, 2 shards, worker

        got: dict[int, list[str]] = {0: [], 1: []}
        async with aiohttp.ClientSession(headers={"X-API-Key": api_key}) as http:
            tokens = []
            for n in range(2):
                async with http.post(f"http://127.0.0.1:{rest}/api/v1/devices/register", json={}) as r:
                    dev = await r.json()
                async with http.post(
                    f"http://127.0.0.1:{rest}/api/v1/devices/{dev['device_id']}/tokens",
                    json={"topic": BUNDLE, "environment": "production"},
                ) as r:
                    tokens.append((await r.json())["token"])
                client = DeviceClient(
                    f"ws://127.0.0.1:{ws + n}/v1/connect", dev["device_id"], dev["secret"],
                    on_push=lambda push, n=n: got[n].append(push.apns_id),
                )  # fmt: skip
                client.start()
                await asyncio.wait_for(client.wait_connected(), 10)
                devices.append(client)
            sent: dict[int, str] = {}
            for n, token in enumerate(tokens):
                body = {"token": token, "topic": BUNDLE, "payload": {"aps": {"alert": f"shard {n}"}}}
                async with http.post(f"http://127.0.0.1:{rest}/api/v1/send", json=body) as r:
                    assert r.status == 200, await r.text()
                    sent[n] = (await r.json())["apns_id"]
        for _ in range(100):
            if all(got[n] == [sent[n]] for n in (0, 1)):
                break
            await asyncio.sleep(0.1)
        assert got == {0: [sent[0]], 1: [sent[1]]}
    finally:
        for client in devices:
            await client.stop()
        cluster.send_signal(signal.SIGTERM)
        rc = cluster.wait(timeout=30)
    assert rc == 0
    assert psutil_children(cluster.pid) == []


def psutil_children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc; no psutil dependency)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out
