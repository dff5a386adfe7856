"""Nothing under ``/admin/api/`` without the admin token.

The test walks the route table of the real provider process (see
gateway_app.py): every ``/admin/api/`` route must appear in ``ADMIN_ROUTES``
below with a concrete request that would change or reveal something if the
guard let it through, so a new admin route fails this test until someone adds
it.  Each route is tried with no credentials, wrong admin tokens and every
tenant credential (app A's API key, a provider JWT signed by A's real key);
all get 401 and nothing changes.  With ``admin_token`` unset every route is
403 ``AdminDisabled``, whatever is presented.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from yarl import URL

from gateway import admin_ops
from tests.security.gateway_app import ADMIN_TOKEN, Gateway, open_gateway

ADMIN = "/admin/api/v1"


@dataclass
class Victim:
    """What an attacker without the admin token would like to read or change."""

    team: str
    bundle: str
    key_id: str  # a provider signing key of A's team
    api_key_prefix: str
    provider_jwt: str  # a valid provider token of A's team (for HTTP/2), not an admin credential
    device_id: str
    apns_id: str


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    async for g in open_gateway(tmp_path):
        yield g


EVIL_P8 = admin_ops.generate_p8()[0]  # a usable .p8: without the guard the upload would succeed

# (method, route) -> (concrete path, JSON body).  The bodies are valid: without
# the guard each request would succeed and change what `_snapshot` reads.
ADMIN_ROUTES: dict[tuple[str, str], tuple[str, Any]] = {
    ("GET", f"{ADMIN}/stats"): ("/stats", None),
    ("GET", f"{ADMIN}/devices"): ("/devices?q={v.device_id}", None),
    ("GET", f"{ADMIN}/devices/{{device_id}}"): ("/devices/{v.device_id}", None),
    ("GET", f"{ADMIN}/notifications"): ("/notifications?app={v.bundle}", None),
    ("GET", f"{ADMIN}/notifications/{{apns_id}}"): ("/notifications/{v.apns_id}", None),
    ("GET", f"{ADMIN}/shards"): ("/shards", None),
    ("GET", f"{ADMIN}/feedback"): ("/feedback?app={v.bundle}", None),
    ("GET", f"{ADMIN}/teams"): ("/teams", None),
    ("POST", f"{ADMIN}/teams"): ("/teams", {"team_id": "EVILTEAM01", "name": "evil"}),
    ("GET", f"{ADMIN}/teams/{{team_id}}"): ("/teams/{v.team}", None),
    ("PATCH", f"{ADMIN}/teams/{{team_id}}"): ("/teams/{v.team}", {"name": "pwned"}),
    ("DELETE", f"{ADMIN}/teams/{{team_id}}"): ("/teams/{v.team}", None),
    ("GET", f"{ADMIN}/teams/{{team_id}}/keys"): ("/teams/{v.team}/keys", None),
    ("POST", f"{ADMIN}/teams/{{team_id}}/keys"): ("/teams/{v.team}/keys", {"key_id": "EVILKEY001"}),
    ("GET", f"{ADMIN}/keys"): ("/keys", None),
    ("DELETE", f"{ADMIN}/keys/{{key_id}}"): ("/keys/{v.key_id}", None),
    ("GET", f"{ADMIN}/apps"): ("/apps", None),
    ("POST", f"{ADMIN}/apps"): ("/apps", {"team_id": "{v.team}", "bundle_id": "com.evil.app"}),
    ("GET", f"{ADMIN}/apps/{{app}}"): ("/apps/{v.bundle}", None),
    ("PATCH", f"{ADMIN}/apps/{{app}}"): ("/apps/{v.bundle}", {"name": "pwned"}),
    ("DELETE", f"{ADMIN}/apps/{{app}}"): ("/apps/{v.bundle}", None),
    ("GET", f"{ADMIN}/apps/{{app}}/apikeys"): ("/apps/{v.bundle}/apikeys", None),
    ("POST", f"{ADMIN}/apps/{{app}}/apikeys"): ("/apps/{v.bundle}/apikeys", None),
    ("DELETE", f"{ADMIN}/apps/{{app}}/apikeys/{{prefix}}"): ("/apps/{v.bundle}/apikeys/{v.api_key_prefix}", None),
    ("GET", f"{ADMIN}/apps/{{app}}/webhook"): ("/apps/{v.bundle}/webhook", None),
    ("PUT", f"{ADMIN}/apps/{{app}}/webhook"): (
        "/apps/{v.bundle}/webhook",
        {"url": "https://evil.example/hook", "secret": "s"},
    ),
    ("DELETE", f"{ADMIN}/apps/{{app}}/webhook"): ("/apps/{v.bundle}/webhook", None),
    ("GET", f"{ADMIN}/apns-credentials"): ("/apns-credentials", None),
    ("GET", f"{ADMIN}/apps/{{app}}/apns-credentials"): ("/apps/{v.bundle}/apns-credentials", None),
    ("PUT", f"{ADMIN}/apps/{{app}}/apns-credentials"): (
        "/apps/{v.bundle}/apns-credentials",
        {"kind": "token", "team_id": "EVILTEAM01", "key_id": "EVILKEY001", "p8": EVIL_P8},
    ),
    ("DELETE", f"{ADMIN}/apps/{{app}}/apns-credentials"): ("/apps/{v.bundle}/apns-credentials", None),
}


def _admin_routes(gw: Gateway) -> set[tuple[str, str]]:
    return {(m, p) for m, p in gw.routes() if p.startswith("/admin/api/")}


def _concrete(route: tuple[str, str], v: Victim) -> tuple[str, Any]:
    path, body = ADMIN_ROUTES[route]
    if isinstance(body, dict):
        body = {k: x.format(v=v) for k, x in body.items()}
    return ADMIN + path.format(v=v), body


async def _victim(gw: Gateway) -> Victim:
    a = gw.a
    store = gw.store
    key = await admin_ops.create_provider_key(store, a.team)
    token = jwt.encode({"iss": a.team, "iat": int(time.time())}, key["private_key_p8"],
                       algorithm="ES256", headers={"kid": key["key_id"]})  # fmt: skip
    await store.set_webhook(a.app_id, "https://a.example/hook", "a-secret")
    status, dev = await gw.call("POST", "/api/v1/devices/register", a.key, {"user_id": "alice"})
    assert status == 201, dev
    status, tok = await gw.call("POST", f"/api/v1/devices/{dev['device_id']}/tokens", a.key, {"topic": a.bundle})
    assert status == 201, tok
    push = {"token": tok["token"], "topic": a.bundle, "payload": {"aps": {}}}
    status, sent = await gw.call("POST", "/api/v1/send", a.key, push)
    assert status == 200, sent
    (record,) = await store.list_api_keys(a.app_id)
    creds = {"kind": "token", "team_id": "APPLETEAMA", "key_id": "APPLEKEYA1", "p8": admin_ops.generate_p8()[0]}
    status, shown = await _admin_call(gw, "PUT", f"{ADMIN}/apps/{a.bundle}/apns-credentials",
                                      {"Authorization": f"Bearer {ADMIN_TOKEN}"}, creds)  # fmt: skip
    assert status in (200, 403), shown  # 403: the gateway runs with the admin API off
    return Victim(a.team, a.bundle, key["key_id"], record.key_prefix, token, dev["device_id"], sent["apns_id"])


async def _admin_call(gw: Gateway, method: str, path: str, headers: dict[str, str],
                      json: Any = None) -> tuple[int, Any]:  # fmt: skip
    async with gw.http.request(method, gw.base + path, json=json, headers=headers) as r:
        body = await r.json(content_type=None) if r.status != 204 else None
        return r.status, body


async def _snapshot(gw: Gateway, v: Victim) -> dict[str, Any]:
    """Everything the admin routes can change, read with the admin token."""
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    out = {}
    paths = ("/teams", "/apps", "/keys", f"/teams/{v.team}", f"/apps/{v.bundle}", f"/apps/{v.bundle}/webhook",
             "/apns-credentials", f"/apps/{v.bundle}/apns-credentials")  # fmt: skip
    for path in paths:
        status, body = await _admin_call(gw, "GET", ADMIN + path, auth)
        assert status == 200, (path, status, body)
        out[path] = body
    return out


def _bad_credentials(gw: Gateway, v: Victim) -> dict[str, dict[str, str]]:
    return {
        "none": {},
        "empty bearer": {"Authorization": "Bearer "},
        "wrong bearer": {"Authorization": "Bearer not-the-admin-token"},
        "token prefix": {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
        "token plus a byte": {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        "token without scheme": {"Authorization": ADMIN_TOKEN},
        "basic scheme": {"Authorization": f"Basic {ADMIN_TOKEN}"},
        "wrong X-Admin-Token": {"X-Admin-Token": "not-the-admin-token"},
        "tenant API key": {"X-API-Key": gw.a.key},
        "tenant API key as bearer": {"Authorization": f"Bearer {gw.a.key}"},
        "tenant API key as admin token": {"X-Admin-Token": gw.a.key},
        "provider JWT as bearer": {"Authorization": f"bearer {v.provider_jwt}"},
    }


async def test_every_admin_route_has_an_access_check(gw: Gateway) -> None:
    routes = _admin_routes(gw)
    assert routes, "the provider process mounts the admin API"
    missing = routes - set(ADMIN_ROUTES)
    assert not missing, f"admin routes without an access check in ADMIN_ROUTES: {sorted(missing)}"
    # Each concrete request really addresses its route (not a 404 that would be refused anyway).
    patterns = gw.route_patterns()
    v = Victim("TEAMAAAAAA", "com.example.alpha", "KEYID00001", "pfx", "jwt", "d1", "a1")
    for route in ADMIN_ROUTES:
        assert route in patterns, f"{route} is in ADMIN_ROUTES but not served"
        path = _concrete(route, v)[0].split("?")[0]
        pattern = patterns[route]
        assert pattern.fullmatch(path) if pattern else path == route[1], (route, path)


async def test_admin_routes_refuse_everything_but_the_admin_token(gw: Gateway) -> None:
    v = await _victim(gw)
    before = await _snapshot(gw, v)
    for route in sorted(_admin_routes(gw)):
        path, body = _concrete(route, v)
        for name, headers in _bad_credentials(gw, v).items():
            status, answer = await _admin_call(gw, route[0], path, headers, body)
            assert status == 401, (route, name, status, answer)
            assert answer == {"error": "Unauthorized", "detail": "missing or wrong admin token"}, (route, name, answer)
    assert await _snapshot(gw, v) == before, "a refused admin request changed something"
    # A's tenant credentials still work: nothing was revoked or deleted.
    assert (await gw.call("GET", f"/api/v1/devices/{v.device_id}", gw.a.key))[0] == 200
    # The right token through either header is let in (so the 401s above came from the token).
    for headers in ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, {"X-Admin-Token": ADMIN_TOKEN}):
        status, answer = await _admin_call(gw, "GET", f"{ADMIN}/teams/{v.team}", headers)
        assert status == 200 and answer["team_id"] == v.team, answer


async def test_path_spellings_do_not_bypass_the_guard(gw: Gateway) -> None:
    """Encoded, doubled or dotted spellings of an admin path are refused or not found, never served."""
    v = await _victim(gw)
    spellings = [
        f"{ADMIN}/teams/",
        "/admin/api//v1/teams",
        "/admin//api/v1/teams",
        "//admin/api/v1/teams",
        f"{ADMIN}/./teams",
        f"{ADMIN}/x/../teams",
        "/%61dmin/api/v1/teams",
        "/admin/%61pi/v1/teams",
        "/admin%2Fapi%2Fv1%2Fteams",
        "/Admin/api/v1/teams",
        "/ADMIN/API/V1/TEAMS",
        "/api/../admin/api/v1/teams",
        f"{ADMIN}/teams%3F",
        f"{ADMIN}/teams;x=1",
    ]
    for raw in spellings:
        async with gw.http.get(URL(gw.base + raw, encoded=True), headers={"X-API-Key": gw.a.key}) as r:
            text = await r.text()
            assert r.status in (401, 403, 404), (raw, r.status, text)
            assert v.team not in text and "TEAMBBBBBB" not in text, (raw, text)


@pytest.fixture
async def gw_admin_off(tmp_path: Path) -> AsyncIterator[Gateway]:
    async for g in open_gateway(tmp_path, admin_token=""):
        yield g


async def test_admin_api_is_off_when_no_token_is_configured(gw_admin_off: Gateway) -> None:
    gw = gw_admin_off
    routes = _admin_routes(gw)
    assert routes == set(ADMIN_ROUTES), "the same routes are mounted, and every one is closed"
    v = await _victim(gw)
    tries = {**_bad_credentials(gw, v), "the test token": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
             "empty X-Admin-Token": {"X-Admin-Token": ""}}  # fmt: skip
    for route in sorted(routes):
        path, body = _concrete(route, v)
        for name, headers in tries.items():
            status, answer = await _admin_call(gw, route[0], path, headers, body)
            assert status == 403, (route, name, status, answer)
            assert answer["error"] == "AdminDisabled", (route, name, answer)
    teams = await gw.store.list_apps(None)
    assert sorted(app.bundle_id for app in teams) == ["com.example.alpha", "com.example.beta"]
    assert await gw.store.get_webhook(gw.a.app_id) == ("https://a.example/hook", "a-secret")
    key = await gw.store.get_provider_key(v.key_id)
    assert key is not None and not key.revoked
    assert (await gw.call("GET", f"/api/v1/devices/{v.device_id}", gw.a.key))[0] == 200
