"""Every APNs status/reason reachable through the HTTP/2 listener, over a real h2 connection.

Table-driven: each row builds one request on a connection that is already
authenticated (so the one-stream-before-auth rule does not serialize the
table) and checks status, reason, apns-id echo and content type.  Real
PostgreSQL and Redis behind a real ``Core``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg
import pytest

from schemas.notification import Environment
from tests.integration.h2_helpers import (
    BUNDLE,
    DEAD_TOKEN,
    OTHER_APP_TOKEN,
    OTHER_BUNDLE,
    PROD_TOKEN,
    SANDBOX_TOKEN,
    Gateway,
    H2Client,
    gateway,
    make_jwt,
    new_id,
    push_headers,
)

P = f"/3/device/{PROD_TOKEN}"

# (name, status, reason, build(gw) -> (path, headers, body, method))
Case = tuple[str, int, str, Callable[[Gateway], tuple[str, list[tuple[str, str]], bytes, str]]]


def _ok(gw: Gateway, **extra: str) -> list[tuple[str, str]]:
    return push_headers(gw.jwt(), **extra)


def _background(gw: Gateway, priority: str | None = None) -> list[tuple[str, str]]:
    headers = [h for h in _ok(gw) if h[0] != "apns-push-type"] + [("apns-push-type", "background")]
    return headers + ([("apns-priority", priority)] if priority is not None else [])


SYNC = b'{"aps":{"content-available":1}}'


CASES: list[Case] = [
    ("collapse id too long", 400, "BadCollapseId", lambda gw: (P, _ok(gw, apns_collapse_id="x" * 65), b"{}", "POST")),
    ("malformed token", 400, "BadDeviceToken", lambda gw: ("/3/device/xyz1", _ok(gw), b"{}", "POST")),
    ("unknown token", 400, "BadDeviceToken", lambda gw: ("/3/device/" + "99" * 32, _ok(gw), b"{}", "POST")),
    (
        "sandbox token on production",
        400,
        "BadDeviceToken",
        lambda gw: ("/3/device/" + SANDBOX_TOKEN, _ok(gw), b"{}", "POST"),
    ),
    ("bad expiration", 400, "BadExpirationDate", lambda gw: (P, _ok(gw, apns_expiration="soon"), b"{}", "POST")),
    ("bad apns-id", 400, "BadMessageId", lambda gw: (P, _ok(gw, apns_id="not-a-uuid"), b"{}", "POST")),
    ("bad priority", 400, "BadPriority", lambda gw: (P, _ok(gw, apns_priority="7"), b"{}", "POST")),
    ("background at priority 10", 400, "BadPriority", lambda gw: (P, _background(gw, "10"), SYNC, "POST")),
    ("background at priority 1", 400, "BadPriority", lambda gw: (P, _background(gw, "1"), SYNC, "POST")),
    ("background without content-available", 400, "InvalidPushType", lambda gw: (P, _background(gw), b"{}", "POST")),
    (
        "background with an alert",
        400,
        "InvalidPushType",
        lambda gw: (P, _background(gw, "5"), b'{"aps":{"content-available":1,"alert":"x"}}', "POST"),
    ),
    ("bad topic", 400, "BadTopic", lambda gw: (P, push_headers(gw.jwt(), topic="bad topic!"), b"{}", "POST")),
    (
        "token of another app",
        400,
        "TopicDisallowed",
        lambda gw: ("/3/device/" + OTHER_APP_TOKEN, push_headers(gw.jwt(), topic=OTHER_BUNDLE), b"{}", "POST"),
    ),
    (
        "token not for topic",
        400,
        "DeviceTokenNotForTopic",
        lambda gw: ("/3/device/" + OTHER_APP_TOKEN, _ok(gw), b"{}", "POST"),
    ),
    (
        "duplicate header",
        400,
        "DuplicateHeaders",
        lambda gw: (P, [*_ok(gw), ("apns-priority", "10"), ("apns-priority", "5")], b"{}", "POST"),
    ),
    (
        "bad push type",
        400,
        "InvalidPushType",
        lambda gw: (P, [*_ok(gw)[:1], ("apns-push-type", "telegram"), *_ok(gw)[2:]], b"{}", "POST"),
    ),
    ("no token in path", 400, "MissingDeviceToken", lambda gw: ("/3/device/", _ok(gw), b"{}", "POST")),
    ("no topic", 400, "MissingTopic", lambda gw: (P, [("authorization", f"bearer {gw.jwt()}")], b"{}", "POST")),
    ("empty payload", 400, "PayloadEmpty", lambda gw: (P, _ok(gw), b"", "POST")),
    ("malformed json", 400, "BadRequestPayload", lambda gw: (P, _ok(gw), b"{not json", "POST")),
    ("no authorization", 403, "MissingProviderToken", lambda gw: (P, push_headers(None), b"{}", "POST")),
    (
        "expired provider token",
        403,
        "ExpiredProviderToken",
        lambda gw: (P, push_headers(make_jwt(gw.priv, iat=int(time.time()) - 3700)), b"{}", "POST"),
    ),
    ("garbage provider token", 403, "InvalidProviderToken", lambda gw: (P, push_headers("abc.def.ghi"), b"{}", "POST")),
    ("bad path", 404, "BadPath", lambda gw: ("/3/devices/" + PROD_TOKEN, _ok(gw), b"{}", "POST")),
    ("GET", 405, "MethodNotAllowed", lambda gw: (P, _ok(gw), b"", "GET")),
    ("unregistered token", 410, "Unregistered", lambda gw: ("/3/device/" + DEAD_TOKEN, _ok(gw), b"{}", "POST")),
    (
        "payload over 4096",
        413,
        "PayloadTooLarge",
        lambda gw: (P, _ok(gw), b'{"aps":{"alert":"' + b"x" * 4100 + b'"}}', "POST"),
    ),
    ("body over every limit", 413, "PayloadTooLarge", lambda gw: (P, _ok(gw), b"{" + b" " * 20000 + b"}", "POST")),
]


@pytest.fixture
async def gw(pg_dsn: str, redis_url: str):  # type: ignore[no-untyped-def]
    async with gateway(pg_dsn, redis_url) as g:
        yield g


async def _authed_client(gw: Gateway) -> H2Client:
    client = await H2Client.connect(gw.port)
    first = await client.request(P, push_headers(gw.jwt()))
    assert first.status == 200
    return client


async def test_success_echoes_apns_id_and_is_durable(gw: Gateway) -> None:
    client = await H2Client.connect(gw.port)
    try:
        apns_id = new_id()
        resp = await client.request(P, push_headers(gw.jwt(), apns_id=apns_id))
        assert (resp.status, resp.body, resp.headers["apns-id"]) == (200, b"", apns_id)
        status = await gw.core.store.status(gw.app_id, apns_id)
        assert status is not None and status.token == PROD_TOKEN
    finally:
        client.close()


async def test_generated_apns_id_is_lowercase_uuid(gw: Gateway) -> None:
    client = await H2Client.connect(gw.port)
    try:
        resp = await client.request(P, push_headers(gw.jwt()))
        apns_id = resp.headers["apns-id"]
        assert resp.status == 200 and len(apns_id) == 36 and apns_id == apns_id.lower()
        assert await gw.core.store.status(gw.app_id, apns_id) is not None
    finally:
        client.close()


@pytest.mark.parametrize(("name", "status", "reason", "build"), CASES, ids=[c[0] for c in CASES])
async def test_reason_on_the_wire(gw: Gateway, name: str, status: int, reason: str, build) -> None:  # type: ignore[no-untyped-def]
    client = await _authed_client(gw)
    try:
        path, headers, body, method = build(gw)
        apns_id = new_id()
        if not any(k == "apns-id" for k, _ in headers):
            headers = [*headers, ("apns-id", apns_id)]
        resp = await client.request(path, headers, body=body, method=method)
        assert (resp.status, resp.reason) == (status, reason)
        assert resp.headers["content-type"] == "application/json"
        if reason != "BadMessageId":
            assert resp.headers["apns-id"] == apns_id
        assert await gw.core.store.status(gw.app_id, apns_id) is None  # nothing accepted
    finally:
        client.close()


async def test_unregistered_carries_timestamp_ms(gw: Gateway) -> None:
    client = await _authed_client(gw)
    try:
        resp = await client.request("/3/device/" + DEAD_TOKEN, push_headers(gw.jwt()))
        import orjson

        body = orjson.loads(resp.body)
        assert resp.status == 410 and body == {"reason": "Unregistered", "timestamp": gw.dead_at_ms}
    finally:
        client.close()


async def test_sandbox_host_selects_sandbox_environment(gw: Gateway) -> None:
    client = await _authed_client(gw)
    try:
        host = "api.sandbox.push.apple.com"
        ok = await client.request("/3/device/" + SANDBOX_TOKEN, push_headers(gw.jwt()), authority=host)
        assert ok.status == 200
        bad = await client.request(P, push_headers(gw.jwt()), authority=host)
        assert (bad.status, bad.reason) == (400, "BadDeviceToken")
    finally:
        client.close()


async def test_duplicate_apns_id_returns_original_result(gw: Gateway) -> None:
    client = await _authed_client(gw)
    try:
        apns_id = new_id()
        first = await client.request(P, push_headers(gw.jwt(), apns_id=apns_id))
        again = await client.request(P, push_headers(gw.jwt(), apns_id=apns_id), body=b'{"aps":{"alert":"twice"}}')
        assert (first.status, again.status) == (200, 200)
        assert again.headers["apns-id"] == apns_id
        conn = await asyncpg.connect(gw.core.cfg.database_url)
        try:
            tables = {r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
            table = "notifications" if "notifications" in tables else next(t for t in tables if "notif" in t)
            count = await conn.fetchval(f"SELECT count(*) FROM {table} WHERE apns_id::text = $1", apns_id)
        finally:
            await conn.close()
        assert count == 1
    finally:
        client.close()


async def test_resend_after_unregister_returns_original_result(gw: Gateway) -> None:
    """A retry of an accepted apns-id gets the original 200, not the token's new 410."""
    token = "ab" * 32
    await gw.core.store.register_apns_token(gw.app_id, token, BUNDLE, Environment.PRODUCTION)
    client = await _authed_client(gw)
    try:
        apns_id = new_id()
        first = await client.request("/3/device/" + token, push_headers(gw.jwt(), apns_id=apns_id))
        assert first.status == 200
        assert await gw.core.store.unregister_token(token) is not None
        gw.core.resolver.invalidate(token)
        again = await client.request("/3/device/" + token, push_headers(gw.jwt(), apns_id=apns_id))
        assert (again.status, again.headers["apns-id"]) == (200, apns_id)
        fresh = await client.request("/3/device/" + token, push_headers(gw.jwt(), apns_id=new_id()))
        assert (fresh.status, fresh.reason) == (410, "Unregistered")
    finally:
        client.close()


async def test_store_unavailable_is_503(gw: Gateway) -> None:
    client = await _authed_client(gw)
    try:
        await gw.core.store.close()  # every store call now raises StoreUnavailable
        resp = await client.request(P, push_headers(gw.jwt()))
        assert (resp.status, resp.reason) == (503, "ServiceUnavailable")
    finally:
        client.close()
