"""Scheduled pushes: one-shot delivery times on both wires, and recurring
schedules through the REST API fired by the worker (real store, both backends).

The runner is driven with explicit clock values (``run_once(now_ms)``), so
"after a restart" and "after downtime" are exact, not slept for.
"""

from __future__ import annotations

import json
import time
from typing import Any

from gateway.schedules import ScheduleRunner, slot_apns_id
from tests.integration.h2_helpers import PROD_TOKEN, H2Client, gateway, new_id, push_headers
from tests.integration.test_rest_fixtures import Rest, rest_fixture  # noqa: F401 - fixture

HOUR_MS = 3_600_000


def _start() -> int:
    """A slot boundary an hour ahead: nothing real-time fires it by accident."""
    now = int(time.time() * 1000) + HOUR_MS
    return now - now % 1000


async def _create(rest: Rest, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    status, created = await rest.call("POST", "/api/v1/schedules", body, key=key)
    assert status == 201, created
    return created  # type: ignore[no-any-return]


async def _payloads_in_backlog(rest: Rest, device_id: str, at_ms: int) -> list[Any]:
    rows = await rest.core.store.backlog(device_id, 100, now_s=at_ms // 1000 + 1)
    return [json.loads(r.payload) for r in sorted(rows, key=lambda r: r.id)]


async def test_rest_deliver_at_is_held_until_due(rest: Rest) -> None:
    device_id, token = await rest.device_with_token()
    due = int(time.time() * 1000) + HOUR_MS
    body = {"token": token, "topic": rest.a.bundle, "payload": {"aps": {"alert": "later"}}, "deliver_at_ms": due}
    status, sent = await rest.call("POST", "/api/v1/send", body)
    assert status == 200 and sent["status"] == "pending"
    assert await rest.core.store.backlog(device_id, 10) == []
    held = await rest.core.store.backlog(device_id, 10, now_s=due // 1000 + 1)
    assert [r.apns_id for r in held] == [sent["apns_id"]]


async def test_h2_deliver_at_header_is_held_until_due(pg_dsn: str, redis_url: str) -> None:
    async with gateway(pg_dsn, redis_url) as gw:
        client = await H2Client.connect(gw.port)
        try:
            apns_id = new_id()
            due = int(time.time() * 1000) + HOUR_MS
            headers = [*push_headers(gw.jwt(), apns_id=apns_id), ("pushgw-deliver-at", str(due))]
            resp = await client.request(f"/3/device/{PROD_TOKEN}", headers)
            assert resp.status == 200
            status = await gw.core.store.status(gw.app_id, apns_id)
            assert status is not None and status.status.value == "pending"
            # A kind-apns row is relayed to Apple only once due: not claimable now.
            assert [n.apns_id for n in await gw.core.store.claim_relay("w", 10, 60_000)] == []
        finally:
            client.close()


async def test_schedule_crud_and_other_apps_get_404(rest: Rest) -> None:
    _, token = await rest.device_with_token()
    start = _start()
    created = await _create(
        rest, {"token": token, "payload": {"aps": {"alert": "tick"}}, "every_s": 20, "start_at_ms": start}
    )
    sid = created["schedule_id"]
    assert created["next_slot_ms"] == start and created["token"] == token and created["paused"] is False
    status, listed = await rest.call("GET", "/api/v1/schedules")
    assert status == 200 and [s["schedule_id"] for s in listed["schedules"]] == [sid]

    b = rest.b.key
    assert (await rest.call("GET", "/api/v1/schedules", key=b))[1] == {"schedules": [], "next_after": None}
    for method, path in [("GET", ""), ("POST", "/pause"), ("POST", "/resume"), ("DELETE", "")]:
        status, body = await rest.call(method, f"/api/v1/schedules/{sid}{path}", key=b)
        assert (status, body["reason"]) == (404, "NotFound"), (method, path)
    # B cannot schedule to A's token either (it does not exist for B).
    status, body = await rest.call(
        "POST", "/api/v1/schedules", {"token": token, "payload": {"aps": {}}, "every_s": 5}, key=b
    )
    assert (status, body["reason"]) == (404, "NotFound")

    status, paused = await rest.call("POST", f"/api/v1/schedules/{sid}/pause")
    assert status == 200 and paused["paused"] is True
    status, resumed = await rest.call("POST", f"/api/v1/schedules/{sid}/resume")
    assert status == 200 and resumed["paused"] is False and resumed["next_slot_ms"] == start
    assert (await rest.call("DELETE", f"/api/v1/schedules/{sid}"))[0] == 204
    assert (await rest.call("GET", f"/api/v1/schedules/{sid}"))[0] == 404


async def test_schedule_list_pages_with_a_cursor(rest: Rest) -> None:
    _, token = await rest.device_with_token()
    body = {"token": token, "payload": {"aps": {"alert": "tick"}}, "every_s": 60, "start_at_ms": _start()}
    created = [await _create(rest, body) for _ in range(5)]
    # Creation order; schedules made within one millisecond are ordered by id.
    made = [s["schedule_id"] for s in sorted(created, key=lambda s: (s["created_at_ms"], s["schedule_id"]))]
    seen: list[str] = []
    after = ""
    pages = 0
    while True:
        status, page = await rest.call("GET", f"/api/v1/schedules?limit=2&after={after}")
        assert status == 200 and len(page["schedules"]) <= 2
        seen += [s["schedule_id"] for s in page["schedules"]]
        pages += 1
        if page["next_after"] is None:
            break
        after = page["next_after"]
    # Every schedule once, in order, over three pages (2 + 2 + 1).
    assert (seen, pages) == (made, 3)
    # A schedule deleted between pages does not break the cursor.
    status, first = await rest.call("GET", "/api/v1/schedules?limit=2")
    assert (await rest.call("DELETE", f"/api/v1/schedules/{made[1]}"))[0] == 204
    status, rest_of = await rest.call("GET", f"/api/v1/schedules?after={first['next_after']}")
    assert [s["schedule_id"] for s in rest_of["schedules"]] == made[2:] and rest_of["next_after"] is None
    # The cursor is scoped by app like everything else: B sees none of A's.
    status, other = await rest.call("GET", f"/api/v1/schedules?after={first['next_after']}", key=rest.b.key)
    assert (status, other) == (200, {"schedules": [], "next_after": None})
    for query in ("limit=0", "limit=1001", "limit=x", "after=nonsense", "after=12.", "after=-1.x"):
        status, answer = await rest.call("GET", f"/api/v1/schedules?{query}")
        assert (status, answer["reason"]) == (400, "BadRequestParams"), query


async def test_schedule_validation(rest: Rest) -> None:
    _, token = await rest.device_with_token()
    base = {"token": token, "payload": {"aps": {"alert": "x"}}, "every_s": 10}
    cases = [
        ({"channel": "news"}, "BadRequestParams"),  # two targets
        ({"token": None}, "BadRequestParams"),  # no target
        ({"cron": "* * * * *"}, "BadRequestParams"),  # two periods
        ({"every_s": None}, "BadRequestParams"),  # no period
        ({"every_s": 0}, "BadRequestParams"),
        ({"every_s": None, "cron": "61 * * * *"}, "BadRequestParams"),
        ({"every_s": None, "cron": "0 9 * * *", "timezone": "Nowhere/Else"}, "BadRequestParams"),
        ({"payloads": [{"aps": {}}]}, "BadRequestParams"),  # payload and payloads
        ({"priority": 7}, "BadPriority"),
        ({"topic": "com.someone.else"}, "TopicDisallowed"),
        ({"push_type": "background", "priority": 10, "payload": {"aps": {"content-available": 1}}}, "BadPriority"),
        ({"push_type": "background", "priority": 1, "payload": {"aps": {"content-available": 1}}}, "BadPriority"),
        ({"push_type": "background", "payload": {"aps": {"alert": "x"}}}, "InvalidPushType"),
        ({"push_type": "liveactivity", "payload": {"aps": {"event": "update"}}}, "BadRequestPayload"),
        ({"payload": {"aps": {"alert": "x" * 5000}}}, "PayloadTooLarge"),
    ]
    for change, reason in cases:
        body = {k: v for k, v in {**base, **change}.items() if v is not None}
        status, answer = await rest.call("POST", "/api/v1/schedules", body)
        assert status in (400, 413) and answer["reason"] == reason, (change, status, answer)


async def test_each_slot_fires_once_across_restarts_and_missed_slots_follow_the_policy(rest: Rest) -> None:
    device_id, token = await rest.device_with_token()
    start = _start()
    payloads = [{"aps": {"alert": f"p{i}"}} for i in range(3)]
    sid = (await _create(rest, {"token": token, "payloads": payloads, "every_s": 20, "start_at_ms": start}))[
        "schedule_id"
    ]
    runner = ScheduleRunner(rest.core.store, rest.core.engine, catch_up_s=300)
    assert await runner.run_once(start - 1) == 0  # not yet
    stale = await rest.core.store.get_schedule(rest.a.app.app_id, sid)
    assert await runner.run_once(start + 300) == 1
    assert await runner.run_once(start + 900) == 0  # the same slot is not due twice

    # A worker that crashed after committing the slot but before advancing
    # (or a second worker that read the row at the same time) fires it again:
    # same apns-ids, so the store keeps one copy, and the advance loses.
    restarted = ScheduleRunner(rest.core.store, rest.core.engine, catch_up_s=300)
    assert stale is not None and await restarted.fire(stale, start + 500) == 0
    assert [p["aps"]["alert"] for p in await _payloads_in_backlog(rest, device_id, start)] == ["p0"]
    st = await rest.core.store.status(rest.a.app.app_id, slot_apns_id(sid, start, token))
    assert st is not None

    # Down from just after slot 0 until after slot 5 (100 s): only slot 5 fires, late.
    assert await restarted.run_once(start + 101_000) == 1
    got = await rest.core.store.get_schedule(rest.a.app.app_id, sid)
    assert got is not None and (got.fired, got.skipped, got.last_slot_ms) == (2, 4, start + 100_000)
    assert got.next_slot_ms == start + 120_000
    assert [p["aps"]["alert"] for p in await _payloads_in_backlog(rest, device_id, start + 100_000)] == ["p0", "p2"]

    # Back 10 s after the latest missed slot, with catch_up_s = 5: that slot is
    # too old to be useful, so every missed slot is skipped and none fires late.
    strict = ScheduleRunner(rest.core.store, rest.core.engine, catch_up_s=5)
    assert await strict.run_once(start + 530_000) == 0
    got = await rest.core.store.get_schedule(rest.a.app.app_id, sid)
    assert got is not None and got.fired == 2 and got.skipped == 4 + 21 and got.next_slot_ms == start + 540_000


async def test_paused_schedule_does_not_fire_and_resume_skips_what_fell_meanwhile(rest: Rest) -> None:
    device_id, token = await rest.device_with_token()
    start = int(time.time() * 1000) - 60_000  # slots have been due for a minute
    body = {"token": token, "payload": {"aps": {"alert": "x"}}, "every_s": 20, "start_at_ms": start, "paused": True}
    sid = (await _create(rest, body))["schedule_id"]
    runner = ScheduleRunner(rest.core.store, rest.core.engine)
    assert await runner.run_once() == 0
    status, resumed = await rest.call("POST", f"/api/v1/schedules/{sid}/resume")
    assert status == 200 and resumed["next_slot_ms"] > int(time.time() * 1000) - 1000
    assert await runner.run_once() == 0
    assert await rest.core.store.backlog(device_id, 10, now_s=int(time.time()) + 3600) == []


async def test_channel_schedule_fans_out_and_cron_slots(rest: Rest) -> None:
    devices = [await rest.device_with_token() for _ in range(2)]
    for _, token in devices:
        assert (await rest.call("PUT", f"/api/v1/tokens/{token}/subscriptions/news"))[0] == 204
    start = _start()
    body = {"channel": "news", "payload": {"aps": {"alert": "news"}}, "cron": "*/5 * * * *", "start_at_ms": start}
    created = await _create(rest, body)
    first = created["next_slot_ms"]
    assert first >= start and first % 300_000 == 0
    runner = ScheduleRunner(rest.core.store, rest.core.engine)
    assert await runner.run_once(first) == 1
    for device_id, _ in devices:
        assert len(await _payloads_in_backlog(rest, device_id, first)) == 1
    got = await rest.core.store.get_schedule(rest.a.app.app_id, created["schedule_id"])
    assert got is not None and got.next_slot_ms == first + 300_000


async def test_schedule_to_a_dead_token_records_why(rest: Rest) -> None:
    _, token = await rest.device_with_token()
    start = _start()
    sid = (await _create(rest, {"token": token, "payload": {"aps": {}}, "every_s": 60, "start_at_ms": start}))[
        "schedule_id"
    ]
    assert (await rest.call("DELETE", f"/api/v1/tokens/{token}"))[0] == 204
    await ScheduleRunner(rest.core.store, rest.core.engine).run_once(start)
    status, view = await rest.call("GET", f"/api/v1/schedules/{sid}")
    assert status == 200 and view["last_error"] == "Unregistered" and view["next_slot_ms"] == start + 60_000


async def test_a_tick_fires_every_due_schedule_beyond_one_page(rest: Rest) -> None:
    device_id, token = await rest.device_with_token()
    start = _start()
    for i in range(5):
        body = {"token": token, "payload": {"aps": {"alert": f"s{i}"}}, "every_s": 60, "start_at_ms": start}
        await _create(rest, body)
    runner = ScheduleRunner(rest.core.store, rest.core.engine, batch=2)
    assert await runner.run_once(start) == 5
    assert len(await _payloads_in_backlog(rest, device_id, start)) == 5
