"""An app cannot read or push to another team's tokens, devices, notifications or feedback.

The test walks the route table of the real provider process (see
gateway_app.py): every ``/api/`` route must appear in ``ATTACKS`` below, so a
new route fails this test until someone says how it is isolated.  Each attack
is app B's key aimed at app A's resources; afterwards A's resources are
intact and nothing reached A's device.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.security.gateway_app import Gateway, open_gateway


@dataclass
class Victim:
    """App A's resources the attacker (app B) knows the identifiers of."""

    device_id: str
    token: str  # a local token of A's device
    apns_token: str  # a relayed (APNs) token of A
    gone_token: str  # a token A deleted: it has a feedback record
    apns_id: str  # a notification A sent
    user_id: str
    channel: str
    schedule_id: str  # a recurring schedule of A's on its token


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async for g in open_gateway(tmp_path):
        yield g


async def _victim(gw: Gateway) -> Victim:
    a = gw.a.key
    status, dev = await gw.call("POST", "/api/v1/devices/register", a, {"user_id": "alice"})
    assert status == 201, dev
    device_id = dev["device_id"]
    status, tok = await gw.call("POST", f"/api/v1/devices/{device_id}/tokens", a, {"topic": gw.a.bundle})
    assert status == 201, tok
    status, gone = await gw.call("POST", f"/api/v1/devices/{device_id}/tokens", a, {"topic": gw.a.bundle})
    assert status == 201
    assert (await gw.call("DELETE", f"/api/v1/tokens/{gone['token']}", a))[0] in (200, 204)
    apns_token = "ab" * 32
    status, body = await gw.call("POST", "/api/v1/tokens/apns", a, {"token": apns_token, "topic": gw.a.bundle})
    assert status in (200, 201), body
    channel = "news"
    status, body = await gw.call("PUT", f"/api/v1/tokens/{tok['token']}/subscriptions/{channel}", a)
    assert status in (200, 201, 204), body
    apns_id = str(uuid.uuid4())
    status, body = await gw.call("POST", "/api/v1/send", a, {"token": tok["token"], "topic": gw.a.bundle,
                                                               "apns_id": apns_id, "payload": {"aps": {}}})  # fmt: skip
    assert status == 200, body
    status, sched = await gw.call("POST", "/api/v1/schedules", a,
                                  {"token": tok["token"], "payload": {"aps": {}}, "every_s": 3600})  # fmt: skip
    assert status == 201, sched
    status, body = await gw.call("PUT", "/api/v1/digest", a, {"window_s": 60})
    assert status in (200, 201), body
    status, body = await gw.call("PUT", f"/api/v1/devices/{device_id}/quiet-hours", a, QUIET_A)
    assert status == 200, body
    return Victim(device_id, tok["token"], apns_token, gone["token"], apns_id, "alice", channel, sched["schedule_id"])


def _payload(v: Victim, topic: str) -> dict[str, Any]:
    return {"payload": {"aps": {"alert": "from B"}}, "topic": topic}


QUIET_A = {"start": "22:00", "end": "07:00", "tz": "Europe/Berlin"}

Attack = Callable[[Gateway, Victim], Awaitable[tuple[int, Any]]]


def _object(method: str, path: str, json: Any = None) -> Attack:
    """B names one of A's objects: it must look like it does not exist."""

    async def attack(gw: Gateway, v: Victim) -> tuple[int, Any]:
        body_in = {k: (x.format(v=v) if isinstance(x, str) else x) for k, x in json.items()} if json else json
        status, body = await gw.call(method, path.format(v=v), gw.b.key, body_in)
        assert status in (400, 403, 404), (method, path, status, body)
        return status, body

    return attack


def _collection(method: str, path: str, json: Any = None) -> Attack:
    """A per-app collection: B sees its own (empty) list, nothing of A's."""

    async def attack(gw: Gateway, v: Victim) -> tuple[int, Any]:
        status, body = await gw.call(method, path, gw.b.key, json)
        assert status in (200, 201, 204, 404), (method, path, status, body)  # 404: B has none
        text = str(body)
        for secret in (v.device_id, v.token, v.apns_token, v.gone_token, v.apns_id, v.schedule_id):
            assert secret not in text, (method, path, body)
        return status, body

    return attack


def _send(path: str, json: Callable[[Gateway, Victim], Any]) -> Attack:
    """B pushes at A's token, user or channel: nothing is queued for A."""

    async def attack(gw: Gateway, v: Victim) -> tuple[int, Any]:
        status, body = await gw.call("POST", path, gw.b.key, json(gw, v))
        assert status < 500, (path, status, body)
        if status == 200 and isinstance(body, dict):
            assert not body.get("accepted"), (path, body)
        return status, body

    return attack


ATTACKS: dict[tuple[str, str], Attack] = {
    ("GET", "/api/v1/devices/{device_id}"): _object("GET", "/api/v1/devices/{v.device_id}"),
    ("DELETE", "/api/v1/devices/{device_id}"): _object("DELETE", "/api/v1/devices/{v.device_id}"),
    ("POST", "/api/v1/devices/{device_id}/tokens"): _object(
        "POST", "/api/v1/devices/{v.device_id}/tokens", {"topic": "com.example.beta"}
    ),
    ("DELETE", "/api/v1/tokens/{token}"): _object("DELETE", "/api/v1/tokens/{v.token}"),
    ("PUT", "/api/v1/tokens/{token}/subscriptions/{channel}"): _object(
        "PUT", "/api/v1/tokens/{v.token}/subscriptions/spam"
    ),
    ("DELETE", "/api/v1/tokens/{token}/subscriptions/{channel}"): _object(
        "DELETE", "/api/v1/tokens/{v.token}/subscriptions/{v.channel}"
    ),
    ("GET", "/api/v1/devices/{device_id}/quiet-hours"): _object("GET", "/api/v1/devices/{v.device_id}/quiet-hours"),
    ("PUT", "/api/v1/devices/{device_id}/quiet-hours"): _object(
        "PUT", "/api/v1/devices/{v.device_id}/quiet-hours", {"start": "00:00", "end": "23:59", "tz": "UTC"}
    ),
    ("DELETE", "/api/v1/devices/{device_id}/quiet-hours"): _object(
        "DELETE", "/api/v1/devices/{v.device_id}/quiet-hours"
    ),
    ("GET", "/api/v1/notifications/{apns_id}"): _object("GET", "/api/v1/notifications/{v.apns_id}"),
    # Registering A's relayed token under B must not take it over.
    ("POST", "/api/v1/tokens/apns"): _object(
        "POST", "/api/v1/tokens/apns", {"token": "ab" * 32, "topic": "com.example.beta"}
    ),
    ("GET", "/api/v1/schedules/{schedule_id}"): _object("GET", "/api/v1/schedules/{v.schedule_id}"),
    ("DELETE", "/api/v1/schedules/{schedule_id}"): _object("DELETE", "/api/v1/schedules/{v.schedule_id}"),
    ("POST", "/api/v1/schedules/{schedule_id}/pause"): _object("POST", "/api/v1/schedules/{v.schedule_id}/pause"),
    ("POST", "/api/v1/schedules/{schedule_id}/resume"): _object("POST", "/api/v1/schedules/{v.schedule_id}/resume"),
    # A schedule of B's aimed at A's token is refused like a send.
    ("POST", "/api/v1/schedules"): _object(
        "POST", "/api/v1/schedules", {"token": "{v.token}", "payload": {"aps": {}}, "every_s": 3600}
    ),
    ("GET", "/api/v1/schedules"): _collection("GET", "/api/v1/schedules"),
    # The digest rule is per app: B reads, sets and deletes its own.
    ("GET", "/api/v1/digest"): _collection("GET", "/api/v1/digest"),
    ("PUT", "/api/v1/digest"): _collection("PUT", "/api/v1/digest", {"window_s": 5}),
    ("DELETE", "/api/v1/digest"): _collection("DELETE", "/api/v1/digest"),
    ("POST", "/api/v1/devices/register"): _collection("POST", "/api/v1/devices/register", {}),
    ("GET", "/api/v1/feedback"): _collection("GET", "/api/v1/feedback"),
    ("GET", "/api/v1/webhooks/deliveries"): _collection("GET", "/api/v1/webhooks/deliveries"),
    ("PUT", "/api/v1/webhook"): _collection("PUT", "/api/v1/webhook", {"url": "https://b.example/hook"}),
    ("POST", "/api/v1/send"): _send("/api/v1/send", lambda gw, v: {"token": v.token, **_payload(v, gw.a.bundle)}),
    ("POST", "/api/v1/send/batch"): _send(
        "/api/v1/send/batch",
        lambda gw, v: {"notifications": [{"token": t, **_payload(v, gw.a.bundle)} for t in (v.token, v.apns_token)]},
    ),
    ("POST", "/api/v1/send/user"): _send("/api/v1/send/user", lambda gw, v: {"user_id": v.user_id, **_payload(v, "")}),
    ("POST", "/api/v1/send/topic"): _send(
        "/api/v1/send/topic", lambda gw, v: {"channel": v.channel, **_payload(v, "")}
    ),
}


def _api_routes(gw: Gateway) -> set[tuple[str, str]]:
    return {(m, p) for m, p in gw.routes() if p.startswith("/api/") and "admin" not in p}


async def test_every_api_route_has_an_isolation_check(gw: Gateway) -> None:
    missing = _api_routes(gw) - set(ATTACKS)
    assert not missing, f"routes without a cross-tenant check in ATTACKS: {sorted(missing)}"


async def test_another_app_cannot_touch_or_see_our_resources(gw: Gateway) -> None:
    v = await _victim(gw)
    for send in (False, True):  # the reads and writes first, the pushes after
        for route, attack in ATTACKS.items():
            if (route[1].startswith("/api/v1/send")) == send:
                await attack(gw, v)
    # A's world is unchanged.
    a = gw.a.key
    status, dev = await gw.call("GET", f"/api/v1/devices/{v.device_id}", a)
    assert status == 200, dev
    backlog = await gw.store.backlog(v.device_id, 100, None)
    assert [n.apns_id for n in backlog] == [v.apns_id], "only A's own push is queued for A's device"
    status, note = await gw.call("GET", f"/api/v1/notifications/{v.apns_id}", a)
    assert status == 200, note
    status, fb = await gw.call("GET", "/api/v1/feedback", a)
    assert status == 200 and v.gone_token in str(fb), fb
    token = await gw.store.get_token(v.apns_token)
    assert token is not None and token.app_id == gw.a.app_id, "A's relayed token still belongs to A"
    assert (await gw.store.get_token(v.token)).app_id == gw.a.app_id  # type: ignore[union-attr]
    status, sched = await gw.call("GET", f"/api/v1/schedules/{v.schedule_id}", a)
    assert status == 200 and sched["paused"] is False, sched
    status, rule = await gw.call("GET", "/api/v1/digest", a)
    assert status == 200 and rule["window_s"] == 60, rule
    status, quiet = await gw.call("GET", f"/api/v1/devices/{v.device_id}/quiet-hours", a)
    assert status == 200 and quiet == QUIET_A, quiet
    subs = await gw.store.channel_tokens(gw.a.app_id, v.channel)
    assert [t.token for t in subs] == [v.token], "A's subscription survives B's unsubscribe"


async def test_api_routes_refuse_missing_and_wrong_keys(gw: Gateway) -> None:
    for method, path in sorted(_api_routes(gw)):
        concrete = path.replace("{device_id}", "d1").replace("{token}", "ab" * 32)
        concrete = concrete.replace("{channel}", "c").replace("{apns_id}", str(uuid.uuid4()))
        for key in (None, "not-a-key", gw.a.key[:-2] + "xx"):
            status, body = await gw.call(method, concrete, key, {})
            assert status == 403, (method, path, key, status, body)
            assert body["reason"] in ("MissingProviderToken", "InvalidProviderToken"), body
