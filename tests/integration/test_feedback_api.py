"""Feedback routes over real HTTP against a real PostgreSQL store."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import REGISTRY

from feedback.api import build_feedback_app
from feedback.records import token_invalidated
from feedback.webhooks import WebhookWorker
from gateway.store.base import App
from tests.integration.bridge_fixtures import TEAM, make_store

APP_KEY: web.RequestKey[App] = web.RequestKey("test_app", App)


@pytest.fixture
async def setup(tmp_path, pg_dsn):  # type: ignore[no-untyped-def]
    from gateway.config import Config

    store = await make_store(Config(data_dir=str(tmp_path), database_url=pg_dsn))
    await store.create_team(TEAM, "t")
    a = await store.create_app(TEAM, "com.example.a")
    b = await store.create_app(TEAM, "com.example.b")
    apps = {str(a.app_id): a, str(b.app_id): b}

    @web.middleware
    async def fake_auth(request, handler):  # type: ignore[no-untyped-def]
        # Stands in for the REST API-key middleware, which stores the App under its own RequestKey.
        request[APP_KEY] = apps[request.headers["X-Test-App"]]
        return await handler(request)

    app = build_feedback_app(None, store)
    app.middlewares.append(fake_auth)
    client = TestClient(TestServer(app))
    await client.start_server()
    yield store, client, a.app_id, b.app_id
    await client.close()
    await store.close()


async def test_feedback_is_per_app_and_paged(setup) -> None:  # type: ignore[no-untyped-def]
    store, client, a, b = setup
    for i in range(5):
        await token_invalidated(store, a, f"{i:064x}", "Unregistered", 1000 + i)
    await token_invalidated(store, b, "ff" * 32, "BadDeviceToken", 1000)
    r = await client.get("/api/v1/feedback?since=1001&limit=2", headers={"X-Test-App": str(a)})
    page1 = await r.json()
    assert r.status == 200
    assert [(x["token"], x["timestamp"]) for x in page1["feedback"]] == [(f"{1:064x}", 1001), (f"{2:064x}", 1002)]
    after = page1["next_after"]
    r = await client.get(f"/api/v1/feedback?since=1001&limit=2&after={after}", headers={"X-Test-App": str(a)})
    page2 = await r.json()
    assert [x["timestamp"] for x in page2["feedback"]] == [1003, 1004]
    r = await client.get("/api/v1/feedback", headers={"X-Test-App": str(b)})
    assert [x["reason"] for x in (await r.json())["feedback"]] == ["BadDeviceToken"]


async def test_bad_query_is_400_with_reason(setup) -> None:  # type: ignore[no-untyped-def]
    _, client, a, _ = setup
    r = await client.get("/api/v1/feedback?limit=abc", headers={"X-Test-App": str(a)})
    assert r.status == 400 and (await r.json())["reason"] == "BadRequestParams"


async def test_webhook_set_then_invalidation_enqueues_event(setup) -> None:  # type: ignore[no-untyped-def]
    store, client, a, b = setup
    r = await client.put("/api/v1/webhook", json={"url": "ftp://x"}, headers={"X-Test-App": str(a)})
    assert r.status == 400
    r = await client.put("/api/v1/webhook", json={"url": "http://127.0.0.1:1/h"}, headers={"X-Test-App": str(a)})
    body = await r.json()
    assert r.status == 200 and len(body["secret"]) >= 16
    assert await store.get_webhook(a) == ("http://127.0.0.1:1/h", body["secret"])
    await token_invalidated(store, a, "ab" * 32, "DeviceDeleted", 5)
    await token_invalidated(store, b, "cd" * 32, "DeviceDeleted", 5)  # b has no webhook: nothing queued
    r = await client.get("/api/v1/webhooks/deliveries", headers={"X-Test-App": str(a)})
    deliveries = (await r.json())["deliveries"]
    assert [(d["state"], d["event"]["token"], d["event"]["reason"]) for d in deliveries] == [
        ("pending", "ab" * 32, "DeviceDeleted")
    ]
    assert await store.list_webhook_jobs(b) == []


async def test_dead_letter_is_visible_in_the_api_and_counted(setup) -> None:  # type: ignore[no-untyped-def]
    store, client, a, _ = setup
    await store.set_webhook(a, "http://127.0.0.1:9/nobody-listens", "s" * 20)
    await token_invalidated(store, a, "ef" * 32, "BadDeviceToken", 7)

    def attempts(result: str) -> float:
        return REGISTRY.get_sample_value("pushgw_webhook_attempts_total", {"result": result}) or 0.0

    failed, dead = attempts("failed"), attempts("dead")
    worker = WebhookWorker(store, max_attempts=2, backoff_base_s=0.001, backoff_max_s=0.001, timeout_s=2)
    try:
        for _ in range(200):
            await worker.run_once()
            if await store.list_webhook_jobs(a, "dead"):
                break
            await asyncio.sleep(0.01)
    finally:
        await worker.stop()
    r = await client.get("/api/v1/webhooks/deliveries?state=dead", headers={"X-Test-App": str(a)})
    (delivery,) = (await r.json())["deliveries"]
    assert (delivery["state"], delivery["attempts"], delivery["event"]["token"]) == ("dead", 2, "ef" * 32)
    assert delivery["last_error"]  # why it failed is kept for the app to read
    assert (attempts("failed"), attempts("dead")) == (failed + 1, dead + 1)
