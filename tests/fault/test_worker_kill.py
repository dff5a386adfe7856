"""Fault 6: the worker (expiry sweeper, APNs bridge sender, webhook sender) SIGKILLed mid-batch, 3 times.

While the worker relays pushes to a mock Apple (slow answers, 10 streams a
connection), delivers webhooks to a slow receiver and is due to expire
notifications of an offline device, it is SIGKILLed and restarted.  In the
end every relayed push reached Apple and is ``relayed`` in the store, every
webhook job was delivered and is ``delivered``, every expiring notification
is ``expired``; whatever was done twice was done with the same ids (the
apns-id at Apple, ``X-Pushgw-Delivery`` at the receiver), which is what
at-least-once allows.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gateway.apns_bridge.keyvault import KeyVault
from gateway.config import Config
from gateway.store import open_store
from tests.bridge.certs import make_p8, make_self_signed
from tests.bridge.mock_apple import MockApple
from tests.fault.sizes import size
from tests.fault.support import BUNDLE, TEAM, Cluster, ensure_services, eventually, port_block, report, store_rows

RELAYED = size("worker_relayed", 300)
HOOKS = size("worker_webhooks", 40)
EXPIRING = size("worker_expiring", 20)
KILLS = 3
LEASE_S = 3  # a killed worker's claims run out this fast (default 120 s / 60 s)
KID = "FAULTKEY01"
SECRET_KEY = "fault-suite-vault-secret"


@dataclass
class Receiver:
    """The app's webhook endpoint: slow, and it records every delivery."""

    deliveries: list[tuple[str, bytes]] = field(default_factory=list)
    port: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        await asyncio.sleep(0.1)
        self.deliveries.append((request.headers["X-Pushgw-Delivery"], body))
        return web.Response(status=204)


@dataclass
class World:
    cluster: Cluster
    apple: MockApple
    receiver: Receiver
    app_id: int


@pytest.fixture
async def world(pg_dsn: str, redis_url: str, tmp_path: Path) -> AsyncIterator[World]:
    cert, key = make_self_signed(tmp_path)
    private, public = make_p8()
    apple = MockApple(cert, key)
    apple.add_key(KID, TEAM, public)
    apple.delay_s = 0.2
    apple.max_streams = 10
    apple_port = await apple.start()
    receiver = Receiver(port=port_block(1))
    runner = web.AppRunner(web.Application())
    runner.app.router.add_post("/hook", receiver.handle)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver.port).start()
    data = tmp_path / "data"
    data.mkdir()
    c = Cluster(pg_dsn, redis_url, tmp_path, worker=True, PUSHGW_DATA_DIR=str(data), PUSHGW_SECRET_KEY=SECRET_KEY,
                PUSHGW_APNS_SANDBOX_HOST="127.0.0.1", PUSHGW_APNS_PRODUCTION_HOST="127.0.0.1",
                PUSHGW_APNS_PORT=str(apple_port), PUSHGW_APNS_CA_FILE=cert,
                PUSHGW_WORKER_LEASE_S=str(LEASE_S))  # fmt: skip
    try:
        await c.start()
        store = await open_store(Config(database_url=pg_dsn))
        try:
            app = await store.get_app_by_bundle(BUNDLE)
            assert app is not None
        finally:
            await store.close()
        KeyVault(data / "apns_keys.json", SECRET_KEY).put(app.app_id, TEAM, KID, private)
        yield World(c, apple, receiver, app.app_id)
    finally:
        await c.close()
        await runner.cleanup()
        await apple.stop()
        await ensure_services()


async def _prepare(w: World, http: aiohttp.ClientSession) -> tuple[list[str], list[str], list[str]]:
    """The work: relayed pushes, token deletions (webhook jobs), expiring pushes."""
    base = f"http://127.0.0.1:{w.cluster.rest}/api/v1"
    async with http.put(f"{base}/webhook", json={"url": f"http://127.0.0.1:{w.receiver.port}/hook"}) as r:
        assert r.status == 200, await r.text()
    relayed_tokens = [f"{i:064x}" for i in range(1, 11)]
    for t in relayed_tokens:
        w.apple.add_token(t, BUNDLE)
        async with http.post(f"{base}/tokens/apns", json={"token": t, "topic": BUNDLE, "environment": "sandbox"}) as r:
            assert r.status in (200, 201), await r.text()
    async with http.post(f"{base}/devices/register", json={}) as r:
        device = (await r.json())["device_id"]
    local: list[str] = []
    for _ in range(HOOKS + 1):
        async with http.post(f"{base}/devices/{device}/tokens", json={"topic": BUNDLE}) as r:
            assert r.status == 201, await r.text()
            local.append((await r.json())["token"])
    offline = local.pop()  # never connects: its expiring pushes wait for the sweeper

    async def send(token: str, **extra: int) -> str:
        apns_id = str(uuid.uuid4())
        body = {"token": token, "topic": BUNDLE, "apns_id": apns_id, "payload": {"aps": {"alert": "w"}}, **extra}
        async with http.post(f"{base}/send", json=body) as r:
            assert r.status == 200, await r.text()
        return apns_id

    expiring = [await send(offline, expiration=int(time.time()) + 2) for _ in range(EXPIRING)]
    return relayed_tokens, local, expiring


async def _send_relayed(w: World, http: aiohttp.ClientSession, tokens: list[str]) -> list[str]:
    """All relayed pushes at once (batches), so that the bridge has a backlog to be killed in."""
    ids = [str(uuid.uuid4()) for _ in range(RELAYED)]
    for start in range(0, RELAYED, 100):
        batch = [{"token": tokens[i % len(tokens)], "topic": BUNDLE, "apns_id": ids[i], "payload": {"aps": {}}}
                 for i in range(start, min(start + 100, RELAYED))]  # fmt: skip
        async with http.post(f"http://127.0.0.1:{w.cluster.rest}/api/v1/send/batch",
                             json={"notifications": batch}) as r:  # fmt: skip
            assert r.status == 200, await r.text()
            body = await r.json()
            assert body["failed"] == 0, body
    return ids


def _relayed_at_apple(w: World) -> int:
    """Distinct apns-ids Apple has answered 200."""
    return len({a.apns_id for a in w.apple.answered if a.status == 200})


async def test_worker_sigkill_mid_batch_loses_nothing(world: World) -> None:
    w = world
    base = f"http://127.0.0.1:{w.cluster.rest}/api/v1"
    async with aiohttp.ClientSession(headers={"X-API-Key": w.cluster.api_key}) as http:
        relayed_tokens, hook_tokens, expiring = await _prepare(w, http)

        async def delete(token: str) -> None:
            async with http.delete(f"{base}/tokens/{token}") as r:
                assert r.status in (200, 204)

        # The webhook jobs first, all at once, then the relayed pushes, then the kills
        # at once: one by one, the deletions took longer under load than the whole relay.
        await asyncio.gather(*(delete(t) for t in hook_tokens))
        relayed = await _send_relayed(w, http, relayed_tokens)
        kills_mid = []
        for k in range(1, KILLS + 1):
            # Kill k lands once the restarted worker has made progress: 5 more distinct
            # pushes at Apple and at least k/(KILLS+1) of them, capped at all of them (a
            # count of answers could stall when the relay had finished before a kill).
            done = kills_mid[-1][0] if kills_mid else 0
            target = min(RELAYED, max(k * RELAYED // (KILLS + 1), done + 5))
            await eventually(lambda t=target: _relayed_at_apple(w) >= t, 60, f"relay progress to {target}")
            kills_mid.append((_relayed_at_apple(w), len(w.receiver.deliveries)))
            assert w.cluster.worker.kill() == -9
            await asyncio.sleep(0.3)
            await w.cluster.restart(w.cluster.worker)

    def done_at_apple() -> bool:
        return all(w.apple.ok_count(i) >= 1 for i in relayed)

    await eventually(done_at_apple, 60, "every relayed push at Apple")
    hook_jobs: list[int] = []
    store = await open_store(Config(database_url=w.cluster.pg_dsn))
    try:
        for _ in range(300):
            jobs = await store.list_webhook_jobs(w.app_id, None, 1000)
            if len(jobs) == len(hook_tokens) and all(j.state == "delivered" for j in jobs):
                break
            await asyncio.sleep(0.2)
        hook_jobs = [j.id for j in jobs]
        job_state = Counter(j.state for j in jobs)
        rows: dict[str, tuple[str, int]] = {}
        for _ in range(100):
            rows = await store_rows(w.cluster.pg_dsn)
            if all(rows[i][0] == "relayed" for i in relayed) and all(rows[i][0] == "expired" for i in expiring):
                break
            await asyncio.sleep(0.2)
    finally:
        await store.close()

    at_apple = Counter(a.apns_id for a in w.apple.answered if a.status == 200)
    seen_hooks = Counter(d for d, _ in w.receiver.deliveries)
    bodies: dict[str, set[bytes]] = {}
    for d, b in w.receiver.deliveries:
        bodies.setdefault(d, set()).add(b)
    report("worker-sigkill", {
        "relayed": len(relayed), "relayed_at_apple": sum(1 for i in relayed if at_apple[i]),
        "apple_duplicates": sum(n - 1 for n in at_apple.values()),
        "webhook_jobs": len(hook_jobs), "webhooks_delivered": sum(1 for j in hook_jobs if seen_hooks[str(j)]),
        "webhook_duplicates": sum(n - 1 for n in seen_hooks.values()),
        "expired": sum(rows.get(i, ("", 0))[0] == "expired" for i in expiring), "expiring": len(expiring),
    }, kills=KILLS, progress_at_kills=kills_mid)  # fmt: skip
    assert 0 < kills_mid[0][0] < len(relayed), "the first kill landed mid-batch"
    # Nothing lost.
    assert not [i for i in relayed if rows[i][0] != "relayed"], "relayed pushes not finished in the store"
    assert not [i for i in expiring if rows[i][0] != "expired"], "expiring pushes not swept"
    assert len(hook_jobs) == len(hook_tokens), "one webhook job per deleted token"
    assert job_state == Counter({"delivered": len(hook_jobs)}), job_state
    assert all(seen_hooks[str(j)] >= 1 for j in hook_jobs)
    # Done twice only with the same ids (at-least-once), never as new work.
    assert set(at_apple) <= set(relayed)
    assert set(seen_hooks) <= {str(j) for j in hook_jobs}
    assert all(len(b) == 1 for b in bodies.values()), "a redelivered webhook changed its body"
    assert all(n == 1 for _, n in rows.values() if True), "a notification was stored twice"
