"""Contract: the relay queue (kind apns), feedback records and the webhook outbox."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from schemas.notification import Environment, Status, TokenKind
from tests.contract.conftest import World

APNS_TOKEN = "ab" * 32


async def _apns_world(world: World) -> World:
    await world.store.register_apns_token(world.app.app_id, APNS_TOKEN, "com.example.app", Environment.PRODUCTION)
    return world


def _apns_note(world: World, **kw: Any) -> Any:
    kw.setdefault("token", APNS_TOKEN)
    return world.note(device_id=None, kind=TokenKind.APNS, **kw)


async def test_apns_rows_are_relayed_not_drained(world: World) -> None:
    await _apns_world(world)
    res = await world.store.accept(_apns_note(world))
    assert await world.store.backlog(world.device.device_id, 10) == []
    claimed = await world.store.claim_relay("w1", 10, lease_ms=60_000)
    assert [c.id for c in claimed] == [res.id] and claimed[0].kind is TokenKind.APNS
    assert await world.store.claim_relay("w2", 10, lease_ms=60_000) == []  # leased
    await world.store.finish_relay(res.id, "relayed", apple_id="APPLE-ID")
    st = await world.store.status(world.app.app_id, claimed[0].apns_id)
    assert st.status is Status.RELAYED and [e.event for e in st.timeline] == ["accepted", "sent", "relayed"]


async def test_rejected_keeps_reason(world: World) -> None:
    await _apns_world(world)
    res = await world.store.accept(n := _apns_note(world))
    await world.store.claim_relay("w1", 10, 60_000)
    await world.store.finish_relay(res.id, "rejected", reason="BadDeviceToken")
    st = await world.store.status(world.app.app_id, n.apns_id)
    assert st.status is Status.REJECTED and st.reason == "BadDeviceToken"


async def test_two_claimers_never_share_a_row(world: World) -> None:
    await _apns_world(world)
    await world.store.accept_many([_apns_note(world) for _ in range(4)])  # under the cap of 5 per token
    many = [await world.store.register_apns_token(world.app.app_id, f"{i:064x}", "com.example.app",
                                                  Environment.PRODUCTION) for i in range(1, 41)]  # fmt: skip
    await world.store.accept_many([_apns_note(world, token=t.token) for t in many])
    got = await asyncio.gather(*(world.store.claim_relay(f"w{i}", 7, 60_000) for i in range(8)))
    ids = [n.id for batch in got for n in batch]
    assert len(ids) == len(set(ids)) == 44


async def test_retry_and_expired_lease_make_rows_claimable_again(world: World) -> None:
    await _apns_world(world)
    res = await world.store.accept(_apns_note(world))
    assert [c.id for c in await world.store.claim_relay("w1", 10, lease_ms=1)] == [res.id]
    await asyncio.sleep(0.01)  # the crashed sender's lease runs out
    assert [c.id for c in await world.store.claim_relay("w2", 10, lease_ms=60_000)] == [res.id]
    await world.store.retry_relay(res.id, not_before_ms=int(time.time() * 1000) + 60_000)
    assert await world.store.claim_relay("w3", 10, 60_000) == []
    await world.store.retry_relay(res.id, not_before_ms=0)
    assert [c.id for c in await world.store.claim_relay("w3", 10, 60_000)] == [res.id]


async def test_feedback_records_page_and_purge(world: World) -> None:
    s, app = world.store, world.app.app_id
    for i in range(5):
        await s.record_feedback(app, f"{i:064x}", "Unregistered", at_ms=1000 + i)
    await s.record_feedback(app + 1, "ff" * 32, "Unregistered", at_ms=1000)
    first = await s.list_feedback(app, since_ms=1001, limit=2)
    rest = await s.list_feedback(app, since_ms=1001, after_id=first[-1].id)
    assert [r.at_ms for r in first + rest] == [1001, 1002, 1003, 1004]
    assert first[0].reason == "Unregistered" and first[0].token == f"{1:064x}"
    assert await s.purge_feedback(1003) == 4  # 3 of app, 1 of the other app
    assert [r.at_ms for r in await s.list_feedback(app, 0)] == [1003, 1004]


async def test_webhook_outbox(world: World) -> None:
    s, app = world.store, world.app.app_id
    assert await s.get_webhook(app) is None
    await s.set_webhook(app, "http://127.0.0.1:9/hook", "sekrit")
    await s.set_webhook(app, "http://127.0.0.1:9/hook2", "sekrit2")
    assert await s.get_webhook(app) == ("http://127.0.0.1:9/hook2", "sekrit2")
    now = int(time.time() * 1000)
    a = await s.enqueue_webhook(app, b'{"a":1}', now)
    b = await s.enqueue_webhook(app, b'{"b":1}', now + 60_000)
    jobs = await s.claim_webhooks("w1", 10, now, 30_000)
    assert [j.id for j in jobs] == [a] and jobs[0].body == b'{"a":1}' and jobs[0].state == "pending"
    assert await s.claim_webhooks("w2", 10, now, 30_000) == []
    await s.finish_webhook(a, False, "HTTP 500", now + 10)
    (job,) = await s.claim_webhooks("w2", 10, now + 10, 30_000)
    assert job.id == a and job.attempts == 1 and job.last_error == "HTTP 500"
    await s.finish_webhook(a, False, "HTTP 500", None)
    assert [j.state for j in await s.list_webhook_jobs(app, "dead")] == ["dead"]
    (jb,) = await s.claim_webhooks("w3", 10, now + 60_000, 30_000)
    await s.finish_webhook(jb.id, True, None, None)
    assert [(j.id, j.state) for j in await s.list_webhook_jobs(app)] == [(a, "dead"), (b, "delivered")]


async def test_batched_claim_counts_attempts_and_brings_the_environment(world: World) -> None:
    await _apns_world(world)
    res = await world.store.accept(_apns_note(world))
    (claim,) = await world.store.claim_relay_batch("w1", 10, lease_ms=60_000)
    assert (claim.row.id, claim.attempts, claim.environment) == (res.id, 1, "production")
    assert await world.store.claim_relay_batch("w2", 10, 60_000) == []  # leased
    assert await world.store.retry_relay_many([(res.id, 0)]) == 1
    (again,) = await world.store.claim_relay_batch("w2", 10, 60_000)
    assert again.attempts == 2  # persisted: a new sender sees how often it was tried
    await world.store.retry_relay_many([(res.id, int(time.time() * 1000) + 60_000)])
    assert await world.store.claim_relay_batch("w3", 10, 60_000) == []  # not before its time


async def test_finish_relay_many_in_one_call(world: World) -> None:
    await _apns_world(world)
    notes = [_apns_note(world) for _ in range(3)]
    results = await world.store.accept_many(notes)
    claims = await world.store.claim_relay_batch("w1", 10, 60_000)
    assert [c.row.id for c in claims] == [r.id for r in results]
    a, b, c = (r.id for r in results)
    done = await world.store.finish_relay_many(
        [(a, "relayed", None, "APPLE-A"), (b, "rejected", "BadTopic", None), (c, "relayed", None, "APPLE-C")]
    )
    assert done == 3
    statuses = [await world.store.status(world.app.app_id, n.apns_id) for n in notes]
    assert [(s.status, s.reason) for s in statuses] == [
        (Status.RELAYED, None),
        (Status.REJECTED, "BadTopic"),
        (Status.RELAYED, None),
    ]
    # A finished row is never finished again (a late duplicate answer changes nothing).
    assert await world.store.finish_relay_many([(a, "rejected", "Unregistered", None)]) == 0
    assert (await world.store.status(world.app.app_id, notes[0].apns_id)).status is Status.RELAYED
    assert await world.store.claim_relay_batch("w2", 10, 60_000) == []
    with pytest.raises(ValueError):
        await world.store.finish_relay_many([(a, "pending", None, None)])


async def test_forget_apns_token_removes_it_and_its_subscriptions(world: World) -> None:
    await _apns_world(world)
    await world.store.subscribe(APNS_TOKEN, "news")
    assert await world.store.forget_apns_token(APNS_TOKEN) is True
    assert await world.store.get_token(APNS_TOKEN) is None
    assert await world.store.channel_tokens(world.app.app_id, "news") == []
    assert await world.store.forget_apns_token(APNS_TOKEN) is False
    # Local (pushgw-issued) tokens are never forgotten this way.
    assert await world.store.forget_apns_token(world.token) is False
    assert await world.store.get_token(world.token) is not None
    # Registered again later: a token like any other.
    await _apns_world(world)
    assert (await world.store.get_token(APNS_TOKEN)).active  # type: ignore[union-attr]
