"""REST rate limits (per app, per token; in-process and shared through Redis)
and the 503 answer when the store is gone."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from provider_api.ratelimit import RateLimits, RedisBuckets
from provider_api.rest import build_rest_app
from tests.integration.test_rest_fixtures import Rest, make_config, open_rest

TOPIC = "com.example.alpha"
ALERT = {"aps": {"alert": "hi"}}
TOO_MANY = (429, {"reason": "TooManyRequests"})


def _send(token: str) -> dict[str, Any]:
    return {"token": token, "topic": TOPIC, "payload": ALERT}


async def _env(tmp_path: Any, backend: str = "sqlite", pg_dsn: str = "", **cfg: Any) -> Any:
    return open_rest(make_config(backend, pg_dsn, tmp_path, **cfg), backend)


async def test_app_rate_limit(tmp_path: Any) -> None:
    async for rest in await _env(tmp_path, app_rate_per_s=0.5):
        _, token = await rest.device_with_token()
        assert (await rest.call("POST", "/api/v1/send", _send(token)))[0] == 200
        assert await rest.call("POST", "/api/v1/send", _send(token)) == TOO_MANY
        assert await rest.call("POST", "/api/v1/send/batch", {"notifications": [_send(token)]}) == TOO_MANY
        # Another app has its own bucket.
        _, b_token = await rest.device_with_token(rest.b)
        b_send = {"token": b_token, "topic": rest.b.bundle, "payload": ALERT}
        assert (await rest.call("POST", "/api/v1/send", b_send, key=rest.b.key))[0] == 200


async def test_token_rate_limit(tmp_path: Any) -> None:
    async for rest in await _env(tmp_path, token_rate_per_s=0.5):
        device_id, token = await rest.device_with_token()
        _, other = await rest.device_with_token()
        assert (await rest.call("POST", "/api/v1/send", _send(token)))[0] == 200
        assert await rest.call("POST", "/api/v1/send", _send(token)) == TOO_MANY
        status, body = await rest.call(
            "POST", "/api/v1/send/batch", {"notifications": [_send(other), _send(other), _send(token)]}
        )
        assert status == 200
        assert [(r["code"], r.get("reason")) for r in body["results"]] == [
            (200, None),
            (429, "TooManyRequests"),
            (429, "TooManyRequests"),
        ]
        assert len(await rest.core.store.backlog(device_id, 10)) == 1  # refused pushes were not stored


async def test_app_limit_shared_through_redis(tmp_path: Any, redis_url: str) -> None:
    # Two REST apps (standing for two API processes) with Redis buckets share the app's budget.
    async for rest in await _env(tmp_path):
        _, token = await rest.device_with_token()
        limits = RateLimits(0.5, 0.0, RedisBuckets.from_url(redis_url))
        other = TestServer(build_rest_app(rest.core.cfg, rest.core, limits=limits))
        async with TestClient(other) as second:
            assert (
                await rest.client.post("/api/v1/send", json=_send(token), headers={"X-API-Key": rest.a.key})
            ).status == 200
            resp = await second.post("/api/v1/send", json=_send(token), headers={"X-API-Key": rest.a.key})
            assert resp.status == 200  # the first app's limiter is in-process: unlimited here
            resp = await second.post("/api/v1/send", json=_send(token), headers={"X-API-Key": rest.a.key})
            assert (resp.status, await resp.json()) == TOO_MANY


async def test_redis_limits_from_config_are_shared(tmp_path: Any, redis_url: str, pg_dsn: str) -> None:
    cfg = make_config("postgres", pg_dsn, tmp_path, redis_url=redis_url, app_rate_per_s=0.5)
    async for rest in open_rest(cfg, "postgres"):
        _, token = await rest.device_with_token()
        assert (await rest.call("POST", "/api/v1/send", _send(token)))[0] == 200
        other = TestServer(build_rest_app(cfg, rest.core))
        async with TestClient(other) as second:
            resp = await second.post("/api/v1/send", json=_send(token), headers={"X-API-Key": rest.a.key})
            assert (resp.status, await resp.json()) == TOO_MANY


async def test_store_unavailable_is_503(tmp_path: Any, pg_dsn: str) -> None:
    rest: Rest
    async for rest in await _env(tmp_path, "postgres", pg_dsn):
        device_id, token = await rest.device_with_token()
        await rest.call("POST", "/api/v1/send", _send(token))  # the token record is now cached
        await rest.core.store.close()  # the pool is gone: every store call raises StoreUnavailable
        assert await rest.call("POST", "/api/v1/send", _send(token)) == (503, {"reason": "ServiceUnavailable"})
        status, body = await rest.call("POST", "/api/v1/send/batch", {"notifications": [_send(token)]})
        assert (status, body) == (503, {"reason": "ServiceUnavailable"})
        assert await rest.call("GET", f"/api/v1/devices/{device_id}") == (503, {"reason": "ServiceUnavailable"})
