"""REST devices, tokens, subscriptions, auth and the published documents,
against a real Core on SQLite and on PostgreSQL."""

from __future__ import annotations

from aiohttp import web

from provider_api.openapi import ROUTES
from tests.integration.test_rest_fixtures import Rest, rest_fixture  # noqa: F401  (fixture)

APNS_TOKEN = "ab" * 32


async def test_register_device_get_and_issue_token(rest: Rest) -> None:
    status, dev = await rest.call("POST", "/api/v1/devices/register", {"user_id": "u1"})
    assert status == 201 and dev["secret"]
    # The credentials really authenticate the device's socket.
    assert (await rest.core.store.authenticate_device(dev["device_id"], dev["secret"])) is not None
    status, tok = await rest.call(
        "POST", f"/api/v1/devices/{dev['device_id']}/tokens", {"topic": "com.example.alpha", "environment": "sandbox"}
    )
    assert status == 201
    assert (tok["topic"], tok["environment"], tok["kind"], tok["active"]) == (
        "com.example.alpha",
        "sandbox",
        "local",
        True,
    )
    status, info = await rest.call("GET", f"/api/v1/devices/{dev['device_id']}")
    assert status == 200
    assert info["user_id"] == "u1"
    assert [t["token"] for t in info["tokens"]] == [tok["token"]]


async def test_register_device_without_body(rest: Rest) -> None:
    status, dev = await rest.call("POST", "/api/v1/devices/register", data=b"")
    assert status == 201 and dev["device_id"]


async def test_issue_token_for_suffixed_topic_and_foreign_topic(rest: Rest) -> None:
    device_id, _ = await rest.device_with_token()
    status, tok = await rest.call("POST", f"/api/v1/devices/{device_id}/tokens", {"topic": "com.example.alpha.voip"})
    assert status == 201 and tok["topic"] == "com.example.alpha.voip"
    status, body = await rest.call("POST", f"/api/v1/devices/{device_id}/tokens", {"topic": "com.example.beta"})
    assert (status, body) == (400, {"reason": "TopicDisallowed"})


async def test_delete_token_then_push_is_unregistered(rest: Rest) -> None:
    _, token = await rest.device_with_token()
    assert (await rest.call("DELETE", f"/api/v1/tokens/{token}"))[0] == 204
    status, body = await rest.call(
        "POST", "/api/v1/send", {"token": token, "topic": "com.example.alpha", "payload": {"aps": {}}}
    )
    assert status == 410 and body["reason"] == "Unregistered"
    assert isinstance(body["timestamp"], int) and body["timestamp"] > 1_600_000_000_000
    assert (await rest.call("DELETE", f"/api/v1/tokens/{token}"))[0] == 204  # idempotent for the owner


async def test_delete_device_deactivates_its_tokens(rest: Rest) -> None:
    device_id, token = await rest.device_with_token()
    assert (await rest.call("DELETE", f"/api/v1/devices/{device_id}"))[0] == 204
    assert (await rest.call("GET", f"/api/v1/devices/{device_id}")) == (404, {"reason": "NotFound"})
    record = await rest.core.store.get_token(token)
    assert record is not None and not record.active
    status, body = await rest.call(
        "POST", "/api/v1/send", {"token": token, "topic": "com.example.alpha", "payload": {"aps": {}}}
    )
    assert (status, body["reason"]) == (410, "Unregistered")


async def test_register_apns_token(rest: Rest) -> None:
    status, tok = await rest.call(
        "POST",
        "/api/v1/tokens/apns",
        {"token": APNS_TOKEN.upper(), "topic": "com.example.alpha", "environment": "sandbox", "user_id": "u9"},
    )
    assert status == 201
    assert (tok["token"], tok["kind"], tok["user_id"], tok["device_id"]) == (APNS_TOKEN, "apns", "u9", None)
    status, body = await rest.call("POST", "/api/v1/tokens/apns", {"token": "xyz", "topic": "com.example.alpha"})
    assert (status, body) == (400, {"reason": "BadDeviceToken"})


async def test_subscriptions(rest: Rest) -> None:
    _, token = await rest.device_with_token()
    assert (await rest.call("PUT", f"/api/v1/tokens/{token}/subscriptions/news"))[0] == 204
    assert (await rest.call("PUT", f"/api/v1/tokens/{token}/subscriptions/news"))[0] == 204
    assert [t.token for t in await rest.core.store.channel_tokens(rest.a.app.app_id, "news")] == [token]
    assert (await rest.call("DELETE", f"/api/v1/tokens/{token}/subscriptions/news"))[0] == 204
    assert await rest.core.store.channel_tokens(rest.a.app.app_id, "news") == []
    status, body = await rest.call("PUT", f"/api/v1/tokens/{token}/subscriptions/bad%20name")
    assert (status, body) == (400, {"reason": "BadRequestParams"})
    status, body = await rest.call("PUT", f"/api/v1/tokens/{'cd' * 32}/subscriptions/news")
    assert (status, body) == (404, {"reason": "NotFound"})


async def test_authentication(rest: Rest) -> None:
    assert await rest.call("POST", "/api/v1/devices/register", {}, key="") == (
        403,
        {"reason": "MissingProviderToken"},
    )
    assert await rest.call("POST", "/api/v1/devices/register", {}, key="not-a-key") == (
        403,
        {"reason": "InvalidProviderToken"},
    )
    resp = await rest.client.post(
        "/api/v1/devices/register", json={}, headers={"Authorization": f"Bearer {rest.a.key}"}
    )
    assert resp.status == 201


async def test_bad_bodies(rest: Rest) -> None:
    status, body = await rest.call("POST", "/api/v1/devices/register", data=b"{not json")
    assert (status, body) == (400, {"reason": "BadRequestPayload"})
    status, body = await rest.call("POST", "/api/v1/devices/register", {"user": "x"})
    assert (status, body) == (400, {"reason": "BadRequestParams"})
    device_id, _ = await rest.device_with_token()
    status, body = await rest.call(
        "POST", f"/api/v1/devices/{device_id}/tokens", {"topic": "com.example.alpha", "environment": "staging"}
    )
    assert (status, body) == (400, {"reason": "BadRequestParams"})


async def test_unknown_route_and_method(rest: Rest) -> None:
    resp = await rest.client.get("/api/v1/nope", headers={"X-API-Key": rest.a.key})
    assert (resp.status, await resp.json()) == (404, {"reason": "BadPath"})
    resp = await rest.client.get("/api/v1/send", headers={"X-API-Key": rest.a.key})
    assert (resp.status, await resp.json()) == (405, {"reason": "MethodNotAllowed"})


async def test_openapi_documents_every_route_and_docs_page(rest: Rest) -> None:
    served = {
        (r.method.lower(), r.resource.canonical)
        for r in rest.client.app.router.routes()
        if r.resource is not None and r.resource.canonical.startswith("/api/") and r.method != "HEAD"
    }
    documented = {(m, p) for p, ops in rest.openapi.doc["paths"].items() for m in ops}
    assert served == documented
    assert rest.openapi.doc["openapi"].startswith("3.")
    resp = await rest.client.get("/docs")
    page = await resp.text()
    assert resp.status == 200 and resp.content_type == "text/html"
    for route in ROUTES:
        assert route.path in page
    assert "http://" not in page and "https://" not in page  # no external CDN


def test_route_table_matches_handlers() -> None:
    # Every documented route exists on a freshly built app (no store needed).
    from types import SimpleNamespace

    from feedback.api import add_feedback_routes
    from gateway.config import Config
    from provider_api.rest import build_rest_app

    app = build_rest_app(Config(), core=None)
    add_feedback_routes(app, SimpleNamespace(store=None))
    canon = {(r.method.lower(), r.resource.canonical) for r in app.router.routes() if r.resource is not None}
    for route in ROUTES:
        assert (route.method, route.path) in canon
    assert isinstance(app, web.Application)
