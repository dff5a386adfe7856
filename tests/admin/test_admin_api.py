"""Admin API v1 against a running gateway, on SQLite and on PostgreSQL + Redis.

Each test drives the real paths (REST sends, device SDK connections, acks)
and checks that the admin API reports what happened.
"""

from __future__ import annotations

import aiohttp

from tests.admin.support import BUNDLE, TEAM, Rig, eventually


async def test_every_admin_route_refuses_a_missing_or_wrong_token(rig: Rig) -> None:
    async with aiohttp.ClientSession() as anon:
        for path in ("/stats", "/devices", "/teams", "/apps", "/shards", "/keys"):
            async with anon.get(rig.admin_base + path) as r:
                assert r.status == 401, path
                assert (await r.json())["error"] == "Unauthorized"
                assert r.headers["WWW-Authenticate"].startswith("Bearer")
            async with anon.get(rig.admin_base + path, headers={"Authorization": "Bearer wrong"}) as r:
                assert r.status == 401, path
        async with anon.post(rig.admin_base + "/teams", json={"team_id": "EVILTEAM01"}) as r:
            assert r.status == 401
    teams = await rig.admin("GET", "/teams")
    assert [t["team_id"] for t in teams["teams"]] == [TEAM]


async def test_stats_count_per_app_and_latency_of_acks(rig: Rig) -> None:
    _dev, online_token, client = await rig.new_device()
    got: list[str] = []
    client._on_push = lambda push: got.append(push.apns_id)
    _offline_id, offline_token, _ = await rig.new_device(connect=False)
    sent = [await rig.send(online_token, f"n{i}") for i in range(3)]
    await rig.send(offline_token, "waits")

    async def delivered() -> dict | None:  # type: ignore[type-arg]
        s = await rig.admin("GET", "/stats")
        return s if s["totals"]["delivered"] == 3 else None

    s = await eventually(delivered, what="3 delivered in stats")
    assert sorted(got) == sorted(sent)
    (app,) = [a for a in s["apps"] if a["bundle_id"] == BUNDLE]
    assert (app["accepted"], app["delivered"], app["pending"], app["expired"], app["dropped"]) == (4, 3, 1, 0, 0)
    assert s["ack_latency_ms"]["samples"] == 3
    assert 0 <= s["ack_latency_ms"]["p50"] <= s["ack_latency_ms"]["p99"]
    assert s["bridge"] == []

    async def one_connection() -> dict | None:  # type: ignore[type-arg]
        # Shards report every couple of seconds (their heartbeat).
        c = (await rig.admin("GET", "/stats"))["connections"]
        return c if c["per_shard"] == {"0": 1} else None

    assert (await eventually(one_connection, what="1 connection on shard 0"))["total"] == 1


async def test_device_search_and_detail_show_tokens_presence_and_backlog(rig: Rig) -> None:
    online_id, online_token, _ = await rig.new_device(user_id="alice")
    offline_id, offline_token, _ = await rig.new_device(user_id="bob", connect=False)
    queued = [await rig.send(offline_token, f"q{i}") for i in range(2)]

    by_user = await rig.admin("GET", "/devices?q=alice")
    assert [d["device_id"] for d in by_user["devices"]] == [online_id]
    by_token = await rig.admin("GET", f"/devices?q={offline_token[:12]}")
    assert [d["device_id"] for d in by_token["devices"]] == [offline_id]
    everyone = await rig.admin("GET", f"/devices?app={BUNDLE}")
    assert {d["device_id"] for d in everyone["devices"]} == {online_id, offline_id}
    assert (await rig.admin("GET", "/devices?q=%25"))["devices"] == []  # no LIKE wildcard injection

    online = await rig.admin("GET", f"/devices/{online_id}")
    assert online["presence"]["connected"] is True and online["presence"]["shard"] == "0"
    assert [t["token"] for t in online["tokens"]] == [online_token]
    offline = await rig.admin("GET", f"/devices/{offline_id}")
    assert offline["presence"]["connected"] is False
    assert offline["backlog"]["pending"] == 2
    assert [n["apns_id"] for n in offline["backlog"]["next"]] == queued
    assert offline["device"]["user_id"] == "bob" and offline["bundle_id"] == BUNDLE
    await rig.admin("GET", "/devices/no-such-device", 404)


async def test_notification_lookup_shows_its_timeline(rig: Rig) -> None:
    _dev, token, _client = await rig.new_device()
    apns_id = await rig.send(token, "tracked")

    async def acked() -> dict | None:  # type: ignore[type-arg]
        n = await rig.admin("GET", f"/notifications/{apns_id}")
        return n if n["status"] == "delivered" else None

    n = await eventually(acked, what="delivered status")
    assert [e["event"] for e in n["timeline"]] == ["accepted", "sent", "acked"]
    assert n["timeline"][0]["at_ms"] <= n["timeline"][-1]["at_ms"]
    assert n["token"] == token and n["bundle_id"] == BUNDLE and '"tracked"' in n["payload"]
    recent = await rig.admin("GET", f"/notifications?app={BUNDLE}&status=delivered")
    assert [x["apns_id"] for x in recent["notifications"]] == [apns_id]
    await rig.admin("GET", "/notifications/00000000-0000-4000-8000-000000000000", 404)
    await rig.admin("GET", "/notifications?status=bogus", 400)


async def test_shards_report_health_and_feedback_lists_invalid_tokens(rig: Rig) -> None:
    shards = await rig.admin("GET", "/shards")
    (shard,) = shards["shards"]
    assert shard["shard"] == "0" and shard["status"] == "up" and shard["ready"] is True
    assert shard["ws_port"] == rig.cfg.ws_port

    _dev, token, client = await rig.new_device()
    await client.unregister(token)  # unregistering over the socket writes feedback
    fb = await rig.admin("GET", f"/feedback?app={BUNDLE}")
    assert [(r["token"], r["reason"]) for r in fb["feedback"]] == [(token, "Unregistered")]
    await rig.admin("GET", "/feedback", 400)  # the app is required


async def test_crud_teams_apps_keys_and_webhooks(rig: Rig) -> None:
    await rig.admin("POST", "/teams", 201, json={"team_id": "SECONDTEAM", "name": "Second"})
    await rig.admin("POST", "/teams", 409, json={"team_id": "SECONDTEAM"})
    await rig.admin("POST", "/teams", 400, json={"team_id": "bad"})
    await rig.admin("PATCH", "/teams/SECONDTEAM", json={"name": "Renamed"})
    assert (await rig.admin("GET", "/teams/SECONDTEAM"))["name"] == "Renamed"

    app = await rig.admin("POST", "/apps", 201, json={"team_id": "SECONDTEAM", "bundle_id": "com.example.two"})
    await rig.admin("POST", "/apps", 409, json={"team_id": "SECONDTEAM", "bundle_id": "com.example.two"})
    await rig.admin("POST", "/apps", 400, json={"team_id": "NOSUCHTEAM", "bundle_id": "com.example.three"})
    await rig.admin("PATCH", f"/apps/{app['app_id']}", json={"name": "Two"})
    assert (await rig.admin("GET", "/apps/com.example.two"))["name"] == "Two"
    await rig.admin("DELETE", "/teams/SECONDTEAM", 409)  # still has an app

    key = await rig.admin("POST", "/teams/SECONDTEAM/keys", 201)
    assert "BEGIN PRIVATE KEY" in key["private_key_p8"]
    listed = await rig.admin("GET", "/teams/SECONDTEAM/keys")
    assert listed["keys"] == [{"key_id": key["key_id"], "team_id": "SECONDTEAM", "revoked": False}]
    await rig.admin("DELETE", f"/keys/{key['key_id']}", 204)
    assert (await rig.admin("GET", "/keys?team=SECONDTEAM"))["keys"][0]["revoked"] is True

    created = await rig.admin("POST", "/apps/com.example.two/apikeys", 201)
    keys = (await rig.admin("GET", "/apps/com.example.two/apikeys"))["api_keys"]
    assert [k["key_prefix"] for k in keys] == [created["api_key"][:8]]
    async with aiohttp.ClientSession(headers={"X-API-Key": created["api_key"]}) as http:
        async with http.post(f"{rig.base}/api/v1/devices/register", json={}) as r:
            assert r.status == 201  # the new key works on the REST API
            device_id = (await r.json())["device_id"]
    await rig.admin("DELETE", f"/apps/com.example.two/apikeys/{keys[0]['key_prefix']}", 204)
    assert (await rig.admin("GET", "/apps/com.example.two/apikeys"))["api_keys"] == []

    await rig.admin("GET", "/apps/com.example.two/webhook", 404)
    await rig.admin("PUT", "/apps/com.example.two/webhook", json={"url": "https://hooks.example/x", "secret": "s"})
    assert (await rig.admin("GET", "/apps/com.example.two/webhook"))["url"] == "https://hooks.example/x"
    await rig.admin("PUT", "/apps/com.example.two/webhook", 400, json={"url": "ftp://x", "secret": "s"})
    await rig.admin("DELETE", "/apps/com.example.two/webhook", 204)
    await rig.admin("GET", "/apps/com.example.two/webhook", 404)

    await rig.admin("DELETE", "/apps/com.example.two", 409)  # it has a device
    assert device_id
    other = await rig.admin("POST", "/apps", 201, json={"team_id": "SECONDTEAM", "bundle_id": "com.example.empty"})
    await rig.admin("DELETE", f"/apps/{other['app_id']}", 204)
    await rig.admin("GET", f"/apps/{other['app_id']}", 404)
    await rig.admin("POST", "/teams", 201, json={"team_id": "EMPTYTEAM1"})
    await rig.admin("DELETE", "/teams/EMPTYTEAM1", 204)
    await rig.admin("GET", "/teams/EMPTYTEAM1", 404)
