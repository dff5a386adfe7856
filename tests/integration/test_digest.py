"""Digest: the REST rule, pushes held per token, one summary per window,
durable across a worker that dies mid-window (real store, both backends)."""

from __future__ import annotations

import json
import time
from typing import Any

from gateway.digest import DigestGate, DigestWorker, summary_for
from tests.integration.test_rest_fixtures import Rest, rest_fixture  # noqa: F401 - fixture

WINDOW_S = 60


def _gate(rest: Rest) -> Any:
    """Wire the gate as `pushgw serve` does; returns the plain engine (what workers use)."""
    plain = rest.core.engine
    rest.core.engine = DigestGate(plain, rest.core.store)  # type: ignore[assignment]
    return plain


async def _send(rest: Rest, token: str, alert: Any, priority: int = 5) -> dict[str, Any]:
    body = {"token": token, "topic": rest.a.bundle, "payload": {"aps": {"alert": alert}}, "priority": priority}
    status, sent = await rest.call("POST", "/api/v1/send", body)
    assert status == 200, sent
    return sent  # type: ignore[no-any-return]


async def _backlog(rest: Rest, device_id: str) -> list[dict[str, Any]]:
    rows = await rest.core.store.backlog(device_id, 100)
    return [{"apns_id": r.apns_id, **json.loads(r.payload)} for r in sorted(rows, key=lambda r: r.id)]


async def test_rule_rest_round_trip_is_per_app(rest: Rest) -> None:
    status, body = await rest.call("GET", "/api/v1/digest")
    assert (status, body["reason"]) == (404, "NotFound")
    status, rule = await rest.call("PUT", "/api/v1/digest", {"window_s": WINDOW_S, "max_priority": 5})
    assert status == 200 and rule["window_s"] == WINDOW_S and rule["push_types"] == ["alert"]
    assert (await rest.call("GET", "/api/v1/digest"))[1]["max_priority"] == 5
    assert (await rest.call("GET", "/api/v1/digest", key=rest.b.key))[0] == 404
    for bad in ({"window_s": 0}, {"window_s": 10, "max_priority": 11}, {}, {"window_s": 5, "extra": 1}):
        status, body = await rest.call("PUT", "/api/v1/digest", bad)
        assert status == 400, bad
    assert (await rest.call("DELETE", "/api/v1/digest"))[0] == 204
    assert (await rest.call("DELETE", "/api/v1/digest"))[0] == 404


async def test_window_becomes_one_summary_and_originals_point_to_it(rest: Rest) -> None:
    plain = _gate(rest)
    device_id, token = await rest.device_with_token()
    assert (await rest.call("PUT", "/api/v1/digest", {"window_s": WINDOW_S, "max_priority": 5}))[0] == 200

    held = [await _send(rest, token, "motion at the door"), await _send(rest, token, {"title": "Yard", "body": "cat"})]
    urgent = await _send(rest, token, "glass broken", priority=10)  # above max_priority: sent at once
    assert [h["status"] for h in held] == ["digesting", "digesting"] and urgent["status"] == "pending"
    assert [p["apns_id"] for p in await _backlog(rest, device_id)] == [urgent["apns_id"]]
    status, view = await rest.call("GET", f"/api/v1/notifications/{held[0]['apns_id']}")
    assert status == 200 and view["status"] == "digesting" and view["summary_apns_id"] is None

    # A resend of a held apns-id is the original (idempotent), not a new item.
    body = {"token": token, "topic": rest.a.bundle, "payload": {"aps": {"alert": "x"}}, "priority": 5,
            "apns_id": held[0]["apns_id"]}  # fmt: skip
    status, again = await rest.call("POST", "/api/v1/send", body)
    assert status == 200 and again["duplicate"] is True

    worker = DigestWorker(rest.core.store, plain)
    now = int(time.time() * 1000)
    assert await worker.run_once(now) == 0  # the window is still open
    assert await worker.run_once(now + WINDOW_S * 1000 + 1000) == 1
    assert await worker.run_once(now + WINDOW_S * 1000 + 2000) == 0  # once per window

    pushes = await _backlog(rest, device_id)
    assert len(pushes) == 2 and pushes[0]["apns_id"] == urgent["apns_id"]
    summary = pushes[1]
    assert summary["aps"]["alert"] == {"title": "Yard", "body": "cat"}
    assert summary["pushgw_digest"]["count"] == 2
    assert summary["pushgw_digest"]["apns_ids"] == [h["apns_id"] for h in held]
    for h in held:
        status, view = await rest.call("GET", f"/api/v1/notifications/{h['apns_id']}")
        assert status == 200 and view["status"] == "digested" and view["summary_apns_id"] == summary["apns_id"]
        assert [e["event"] for e in view["timeline"]] == ["accepted", "digested"]
    # Another app cannot see the held pushes either.
    assert (await rest.call("GET", f"/api/v1/notifications/{held[0]['apns_id']}", key=rest.b.key))[0] == 404


async def test_worker_dying_mid_window_loses_nothing_and_sends_one_summary(rest: Rest) -> None:
    plain = _gate(rest)
    device_id, token = await rest.device_with_token()
    await rest.call("PUT", "/api/v1/digest", {"window_s": WINDOW_S})
    sent = [await _send(rest, token, f"event {i}", priority=10) for i in range(3)]
    end = int(time.time() * 1000) + WINDOW_S * 1000 + 1000
    # The first worker committed the summary, then died before pointing the items at it.
    items = await rest.core.store.digest_window(rest.a.app.app_id, token, end)
    assert [i.apns_id for i in items] == [s["apns_id"] for s in sent]
    await plain.accept(summary_for(items))
    # A new worker (after the restart) finishes the window: the same summary, not a second one.
    assert await DigestWorker(rest.core.store, plain).run_once(end) == 1
    pushes = await _backlog(rest, device_id)
    assert len(pushes) == 1 and pushes[0]["pushgw_digest"]["count"] == 3
    assert pushes[0]["aps"]["alert"] == {"body": "event 2"}


async def test_batch_sends_are_digested_item_by_item(rest: Rest) -> None:
    _gate(rest)
    device_id, token = await rest.device_with_token()
    await rest.call("PUT", "/api/v1/digest", {"window_s": WINDOW_S, "max_priority": 5})
    items = [
        {"token": token, "topic": rest.a.bundle, "payload": {"aps": {"alert": f"n{i}"}}, "priority": p}
        for i, p in enumerate((5, 10, 5))
    ]
    status, body = await rest.call("POST", "/api/v1/send/batch", {"notifications": items})
    assert status == 200 and [r["status"] for r in body["results"]] == ["digesting", "pending", "digesting"]
    assert [p["aps"]["alert"] for p in await _backlog(rest, device_id)] == ["n1"]


async def test_http2_sends_go_through_the_rule_too(pg_dsn: str, redis_url: str) -> None:
    from gateway.store.schedules_store import DigestRule
    from tests.integration.h2_helpers import PROD_TOKEN, H2Client, gateway, new_id, push_headers

    async with gateway(pg_dsn, redis_url) as gw:
        plain = gw.core.engine
        gw.core.engine = DigestGate(plain, gw.core.store)  # type: ignore[assignment]
        rule = DigestRule(app_id=gw.app_id, window_s=WINDOW_S, max_priority=5, push_types=("alert",))
        await gw.core.store.set_digest_rule(rule)
        client = await H2Client.connect(gw.port)
        try:
            held, sent = new_id(), new_id()
            for apns_id, priority in ((held, "5"), (sent, "10")):
                resp = await client.request(
                    f"/3/device/{PROD_TOKEN}", push_headers(gw.jwt(), apns_id=apns_id, apns_priority=priority)
                )
                assert resp.status == 200
        finally:
            client.close()
        assert await gw.core.store.status(gw.app_id, sent) is not None
        assert await gw.core.store.status(gw.app_id, held) is None  # not a notification (yet)
        item = await gw.core.store.get_digest_item(gw.app_id, held)
        assert item is not None and item.kind == "apns" and item.summary_apns_id is None
        end = int(time.time() * 1000) + WINDOW_S * 1000 + 1000
        assert await DigestWorker(gw.core.store, plain).run_once(end) == 1
        summary = summary_for([item])
        st = await gw.core.store.status(gw.app_id, summary.apns_id)
        assert st is not None and st.token == PROD_TOKEN  # relayed to Apple like any apns-kind push


async def test_no_summary_for_a_token_unregistered_before_the_window_ends(rest: Rest) -> None:
    plain = _gate(rest)
    device_id, token = await rest.device_with_token()
    _, kept = await rest.device_with_token()
    await rest.call("PUT", "/api/v1/digest", {"window_s": WINDOW_S, "max_priority": 5})
    held = [await _send(rest, token, f"motion {i}") for i in range(2)]
    other = await _send(rest, kept, "still registered")
    assert (await rest.call("DELETE", f"/api/v1/tokens/{token}"))[0] == 204
    end = int(time.time() * 1000) + WINDOW_S * 1000 + 1000
    # One window per token: only the registered token's becomes a summary.
    assert await DigestWorker(rest.core.store, plain).run_once(end) == 1
    assert await _backlog(rest, device_id) == []
    for h in held:
        status, view = await rest.call("GET", f"/api/v1/notifications/{h['apns_id']}")
        assert status == 200 and (view["status"], view["reason"]) == ("discarded", "Unregistered")
        assert view["summary_apns_id"] is None
        assert [e["event"] for e in view["timeline"]] == ["accepted", "discarded"]
    # The dropped window is closed: the next pass does nothing.
    assert await DigestWorker(rest.core.store, plain).run_once(end + 1000) == 0
    status, view = await rest.call("GET", f"/api/v1/notifications/{other['apns_id']}")
    assert view["status"] == "digested" and view["summary_apns_id"] is not None
