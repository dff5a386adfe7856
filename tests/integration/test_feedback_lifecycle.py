"""Every way a token ends becomes a feedback record, through the real entry points:
REST token delete, REST device delete, the device's own unregister over its socket
(Apple's answers are covered in test_bridge_relay.py); a token registered again
is valid again; retention purges old records; metrics count records."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from connection_server.server import ShardServer
from connection_server.simulate import provision
from gateway.config import Config
from gateway.runtime import Core
from gateway.workers import Maintenance
from tests.integration.test_delivery_support import BUNDLE, Inbox
from tests.integration.test_rest_fixtures import Rest, rest_fixture  # noqa: F401  (fixture)

APNS_TOKEN = "cd" * 32


def _send(token: str) -> dict[str, Any]:
    return {"token": token, "topic": "com.example.alpha", "payload": {"aps": {"alert": "hi"}}}


def _records(reason: str) -> float:
    return REGISTRY.get_sample_value("pushgw_feedback_records_total", {"reason": reason}) or 0.0


async def test_rest_token_delete_records_feedback_once_with_the_410_timestamp(rest: Rest) -> None:
    _, token = await rest.device_with_token()
    before = _records("Unregistered")
    assert (await rest.call("DELETE", f"/api/v1/tokens/{token}"))[0] == 204
    assert (await rest.call("DELETE", f"/api/v1/tokens/{token}"))[0] == 204  # no second record
    status, body = await rest.call("POST", "/api/v1/send", _send(token))
    assert (status, body["reason"]) == (410, "Unregistered")
    records = await rest.core.store.list_feedback(rest.a.app.app_id, 0)
    assert [(r.token, r.reason, r.at_ms) for r in records] == [(token, "Unregistered", body["timestamp"])]
    assert _records("Unregistered") == before + 1


async def test_rest_device_delete_records_feedback_per_token(rest: Rest) -> None:
    device_id, first = await rest.device_with_token()
    status, second = await rest.call("POST", f"/api/v1/devices/{device_id}/tokens", {"topic": "com.example.alpha.voip"})
    assert status == 201
    await rest.call("DELETE", f"/api/v1/devices/{device_id}")
    records = await rest.core.store.list_feedback(rest.a.app.app_id, 0)
    assert sorted((r.token, r.reason) for r in records) == sorted(
        [(first, "DeviceDeleted"), (second["token"], "DeviceDeleted")]
    )
    token = await rest.core.store.get_token(first)
    assert token is not None and records[0].at_ms == token.invalidated_at_ms
    assert await rest.core.store.list_feedback(rest.b.app.app_id, 0) == []  # per app


async def test_apns_token_registered_again_after_invalidation_is_valid_again(rest: Rest) -> None:
    register = {"token": APNS_TOKEN, "topic": "com.example.alpha", "environment": "production"}
    assert (await rest.call("POST", "/api/v1/tokens/apns", register))[0] == 201
    # Apple said 410 for it (the bridge stores Apple's timestamp).
    await rest.core.store.unregister_token(APNS_TOKEN, 1_700_000_000_123)
    status, body = await rest.call("POST", "/api/v1/send", _send(APNS_TOKEN))
    assert (status, body["reason"], body["timestamp"]) == (410, "Unregistered", 1_700_000_000_123)
    # The device registers the same token again later: it is valid again.
    status, tok = await rest.call("POST", "/api/v1/tokens/apns", register)
    assert status == 201 and tok["active"] is True and tok["invalidated_at_ms"] is None
    status, body = await rest.call("POST", "/api/v1/send", _send(APNS_TOKEN))
    assert status == 200 and body["status"] == "pending"


async def test_token_apple_called_bad_is_answered_like_apple_and_can_come_back(rest: Rest) -> None:
    register = {"token": APNS_TOKEN, "topic": "com.example.alpha", "environment": "production"}
    assert (await rest.call("POST", "/api/v1/tokens/apns", register))[0] == 201
    assert await rest.core.store.forget_apns_token(APNS_TOKEN)  # what the bridge does on 400 BadDeviceToken
    status, body = await rest.call("POST", "/api/v1/send", _send(APNS_TOKEN))
    assert (status, body) == (400, {"reason": "BadDeviceToken"})
    assert (await rest.call("POST", "/api/v1/tokens/apns", register))[0] == 201
    assert (await rest.call("POST", "/api/v1/send", _send(APNS_TOKEN)))[0] == 200


@pytest.fixture(params=["cluster", "embedded"])
async def shard(request, tmp_path, pg_dsn, redis_url) -> AsyncIterator[tuple[Core, ShardServer]]:  # type: ignore[no-untyped-def]
    if request.param == "cluster":
        cfg = Config(database_url=pg_dsn, redis_url=redis_url, ws_port=0, shard_id="t1")
    else:
        cfg = Config(data_dir=str(tmp_path), ws_port=0, shard_id="0")
    core = await Core.open(cfg)
    server = ShardServer(cfg, core)
    await server.start()
    try:
        yield core, server
    finally:
        await server.stop()
        await core.close()


async def test_device_unregistering_its_token_records_feedback(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    [dev] = await provision(core.store, BUNDLE, 1)
    async with Inbox(f"ws://127.0.0.1:{server.port}/v1/connect", dev) as inbox:
        token = await inbox.client.register(BUNDLE + ".voip", "sandbox")
        at_ms = await inbox.client.unregister(token)
    records = await core.store.list_feedback(dev.app_id, 0)
    assert [(r.token, r.reason, r.at_ms) for r in records] == [(token, "Unregistered", at_ms)]


async def test_retention_purges_old_feedback_only(rest: Rest) -> None:
    store, app = rest.core.store, rest.a.app.app_id
    day_ms = 86_400_000
    now_ms = 100 * day_ms
    await store.record_feedback(app, "aa" * 32, "Unregistered", now_ms - 3 * day_ms)
    await store.record_feedback(app, "bb" * 32, "BadDeviceToken", now_ms - day_ms // 2)
    await Maintenance(store, retention_s=2 * 86_400).sweep_once(now_ms)
    assert [r.token for r in await store.list_feedback(app, 0)] == ["bb" * 32]
