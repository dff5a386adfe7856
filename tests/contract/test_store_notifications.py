"""Contract: accepting, collapsing, expiring, capping and draining notifications."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from schemas.notification import Status
from tests.contract.conftest import World


async def test_accept_returns_id_and_backlog_has_it(world: World) -> None:
    n = world.note()
    res = await world.store.accept(n)
    assert res.apns_id == n.apns_id and not res.duplicate and res.status is Status.PENDING
    rows = await world.store.backlog(world.device.device_id, 10)
    assert [r.id for r in rows] == [res.id]
    assert rows[0].payload == n.payload and rows[0].apns_id == n.apns_id and rows[0].status is Status.PENDING


async def test_hundred_concurrent_accepts_are_batched(world: World) -> None:
    store = world.store
    before = store.committer.transactions
    notes = [world.note(apns_id=f"00000000-0000-4000-8000-{i:012d}") for i in range(100)]
    # the cap would drop most of them; use many tokens of the same device instead
    tokens = [(await store.issue_token(world.device.device_id, "com.example.app", _prod())).token for _ in range(25)]
    notes = [world.note(apns_id=n.apns_id, token=tokens[i % 25]) for i, n in enumerate(notes)]
    results = await asyncio.gather(*(store.accept(n) for n in notes))
    assert len({r.id for r in results}) == 100
    assert all(not r.duplicate and r.status is Status.PENDING for r in results)
    txs = store.committer.transactions - before
    assert 1 <= txs < 100
    rows = await store.backlog(world.device.device_id, 1000)
    assert {r.id for r in rows} == {r.id for r in results}


def _prod() -> Any:
    from schemas.notification import Environment

    return Environment.PRODUCTION


async def test_idempotent_per_app_and_apns_id(world: World) -> None:
    n = world.note()
    first = await world.store.accept(n)
    again = await world.store.accept(world.note(apns_id=n.apns_id, payload=b'{"other":1}'))
    assert again.duplicate and again.id == first.id and again.status is Status.PENDING
    await world.store.mark_delivered(world.device.device_id, [first.id])
    third = await world.store.accept(n)
    assert third.duplicate and third.id == first.id and third.status is Status.DELIVERED
    rows = await world.store.backlog(world.device.device_id, 10)
    assert rows == []


async def test_duplicates_inside_one_batch(world: World) -> None:
    n = world.note()
    res = await world.store.accept_many([n, world.note(), n])
    assert not res[0].duplicate and res[2].duplicate and res[2].id == res[0].id
    assert len(await world.store.backlog(world.device.device_id, 10)) == 2


async def test_backlog_orders_by_priority_then_id_and_pages(world: World) -> None:
    ids = {}
    for i, prio in enumerate([5, 10, 1, 10, 5]):
        ids[i] = (await world.store.accept(world.note(priority=prio))).id
    want = [ids[1], ids[3], ids[0], ids[4], ids[2]]
    rows = await world.store.backlog(world.device.device_id, 10)
    assert [r.id for r in rows] == want
    page1 = await world.store.backlog(world.device.device_id, 2)
    page2 = await world.store.backlog(world.device.device_id, 2, after=(page1[-1].priority, page1[-1].id))
    page3 = await world.store.backlog(world.device.device_id, 2, after=(page2[-1].priority, page2[-1].id))
    assert [r.id for r in page1 + page2 + page3] == want


async def test_collapse_keeps_newest_pending(world: World) -> None:
    first = world.note(collapse_id="score")
    a = await world.store.accept(first)
    b = await world.store.accept(world.note(collapse_id="score"))
    other = await world.store.accept(world.note(collapse_id="other"))
    assert b.collapsed_id == a.id and other.collapsed_id is None
    rows = await world.store.backlog(world.device.device_id, 10)
    assert {r.id for r in rows} == {b.id, other.id}
    st = await world.store.status(world.app.app_id, first.apns_id)
    assert st is not None and st.status is Status.COLLAPSED
    assert [e.event for e in st.timeline] == ["accepted", "collapsed"]


async def test_collapse_inside_one_batch(world: World) -> None:
    res = await world.store.accept_many([world.note(collapse_id="k"), world.note(collapse_id="k")])
    assert res[0].status is Status.COLLAPSED and res[1].collapsed_id == res[0].id
    assert [r.id for r in await world.store.backlog(world.device.device_id, 10)] == [res[1].id]


async def test_expiry_edges(world: World) -> None:
    now = int(time.time())
    at_now = await world.store.accept(world.note(expiration=now))
    later = await world.store.accept(world.note(expiration=now + 100))
    retained = await world.store.accept(world.note())
    dev = world.device.device_id
    assert {r.id for r in await world.store.backlog(dev, 10, now_s=now)} == {later.id, retained.id}
    assert {r.id for r in await world.store.backlog(dev, 10, now_s=now - 1)} == {at_now.id, later.id, retained.id}
    assert await world.store.expire_due(now) == 1
    assert {r.id for r in await world.store.backlog(dev, 10, now_s=now + 100)} == {retained.id}
    assert await world.store.expire_due(now + 100) == 1
    # retention (30 days by default) keeps the header-less one until then
    assert {r.id for r in await world.store.backlog(dev, 10, now_s=now + 29 * 86400)} == {retained.id}
    assert await world.store.backlog(dev, 10, now_s=now + 31 * 86400) == []


async def test_expiration_zero_is_pending_then_discarded(world: World) -> None:
    res = await world.store.accept(world.note(expiration=0))
    assert res.status is Status.PENDING
    assert [r.id for r in await world.store.backlog(world.device.device_id, 10)] == [res.id]
    assert await world.store.discard([res.id]) == 1
    assert await world.store.discard([res.id]) == 0
    assert await world.store.backlog(world.device.device_id, 10) == []


async def test_deliver_at_in_future_is_held(world: World) -> None:
    now_ms = int(time.time() * 1000)
    held = await world.store.accept(world.note(deliver_at_ms=now_ms + 60_000))
    due = await world.store.accept(world.note(deliver_at_ms=now_ms - 1))
    dev = world.device.device_id
    assert [r.id for r in await world.store.backlog(dev, 10)] == [due.id]
    later = await world.store.backlog(dev, 10, now_s=now_ms // 1000 + 61)
    assert {r.id for r in later} == {held.id, due.id}


async def test_backlog_cap_drops_lowest_priority_oldest(world: World) -> None:
    # cap is 5 in the fixture
    low_old = await world.store.accept(world.note(priority=1))
    low_new = await world.store.accept(world.note(priority=1))
    highs = [await world.store.accept(world.note(priority=10)) for _ in range(4)]
    assert (await world.store.status(world.app.app_id, low_old.apns_id)).status is Status.DROPPED
    rows = await world.store.backlog(world.device.device_id, 10)
    assert {r.id for r in rows} == {low_new.id} | {h.id for h in highs}
    assert await world.store.take_overflow(world.device.device_id) == 1
    assert await world.store.take_overflow(world.device.device_id) == 0
    # two more: low_new (priority 1) goes, then the new priority-5 row itself
    res = await world.store.accept_many([world.note(priority=5), world.note(priority=10)])
    assert res[0].status is Status.DROPPED and res[1].status is Status.PENDING
    assert (await world.store.status(world.app.app_id, low_new.apns_id)).status is Status.DROPPED
    assert await world.store.take_overflow(world.device.device_id) == 2
    assert len(await world.store.backlog(world.device.device_id, 10)) == 5


async def test_backlog_cap_counts_only_rows_still_pending(world: World) -> None:
    # cap is 5; the store skips the exact check while a cheap bound says a token
    # cannot be over it: rows that left the backlog must not make it drop more
    dev = world.device.device_id
    first = [await world.store.accept(world.note()) for _ in range(5)]
    assert await world.store.mark_delivered(dev, [r.id for r in first[:3]]) == 3
    more = await world.store.accept_many([world.note() for _ in range(3)])
    assert all(r.status is Status.PENDING for r in more)
    assert await world.store.take_overflow(dev) == 0
    # now 5 pending: one more drops exactly the oldest, in another batch too
    extra = await world.store.accept(world.note())
    assert extra.status is Status.PENDING
    assert (await world.store.status(world.app.app_id, first[3].apns_id)).status is Status.DROPPED
    assert await world.store.take_overflow(dev) == 1
    assert len(await world.store.backlog(dev, 10)) == 5


async def test_backlog_cap_of_an_unregistered_token(world: World) -> None:
    # no token row to keep a bound in: the exact check still applies the cap
    token = "ab" * 32
    res = await world.store.accept_many([world.note(token=token, device_id=None) for _ in range(7)])
    assert [r.status for r in res] == [Status.DROPPED] * 2 + [Status.PENDING] * 5


async def test_mark_delivered_only_own_pending_rows(world: World) -> None:
    mine = await world.store.accept(world.note())
    other_dev, _ = await world.store.create_device(world.app.app_id)
    tok = await world.store.issue_token(other_dev.device_id, "com.example.app", _prod())
    theirs = await world.store.accept(world.note(token=tok.token, device_id=other_dev.device_id))
    assert await world.store.mark_delivered(world.device.device_id, [mine.id, theirs.id], sent_at_ms=123) == 1
    assert await world.store.mark_delivered(world.device.device_id, [mine.id]) == 0
    assert [r.id for r in await world.store.backlog(other_dev.device_id, 10)] == [theirs.id]
    st = await world.store.status(world.app.app_id, mine.apns_id)
    assert st is not None and st.status is Status.DELIVERED
    assert [e.event for e in st.timeline] == ["accepted", "sent", "acked"]
    assert st.timeline[1].at_ms == 123


async def test_mark_delivered_many_acks_of_several_devices(world: World) -> None:
    store, dev = world.store, world.device.device_id
    other_dev, _ = await store.create_device(world.app.app_id)
    tok = await store.issue_token(other_dev.device_id, "com.example.app", _prod())
    mine = [await store.accept(world.note()) for _ in range(2)]
    theirs = [await store.accept(world.note(token=tok.token, device_id=other_dev.device_id)) for _ in range(2)]
    acks = [(dev, mine[0].id), (other_dev.device_id, theirs[0].id), (dev, mine[1].id)]
    assert await store.mark_delivered_many(acks, sent_at_ms=123) == 3
    assert await store.mark_delivered_many(acks) == 0  # no longer pending
    assert await store.mark_delivered_many([]) == 0
    assert await store.backlog(dev, 10) == []
    assert [r.id for r in await store.backlog(other_dev.device_id, 10)] == [theirs[1].id]
    st = await store.status(world.app.app_id, theirs[0].apns_id)
    assert st is not None and st.status is Status.DELIVERED
    assert [e.event for e in st.timeline] == ["accepted", "sent", "acked"] and st.timeline[1].at_ms == 123


async def test_mark_delivered_many_needs_the_right_device(world: World) -> None:
    store, dev = world.store, world.device.device_id
    other_dev, _ = await store.create_device(world.app.app_id)
    tok = await store.issue_token(other_dev.device_id, "com.example.app", _prod())
    mine = await store.accept(world.note())
    theirs = await store.accept(world.note(token=tok.token, device_id=other_dev.device_id))
    # each id paired with the wrong device: nothing changes
    assert await store.mark_delivered_many([(dev, theirs.id), (other_dev.device_id, mine.id)]) == 0
    assert [r.id for r in await store.backlog(dev, 10)] == [mine.id]
    assert [r.id for r in await store.backlog(other_dev.device_id, 10)] == [theirs.id]
    # a mixed batch: only the correctly paired one changes
    assert await store.mark_delivered_many([(dev, theirs.id), (dev, mine.id)]) == 1
    assert await store.backlog(dev, 10) == []
    assert [r.id for r in await store.backlog(other_dev.device_id, 10)] == [theirs.id]


async def test_mark_delivered_many_leaves_non_pending_rows(world: World) -> None:
    store, dev = world.store, world.device.device_id
    gone = await store.accept(world.note())
    assert await store.discard([gone.id]) == 1
    old = await store.accept(world.note(collapse_id="c"))
    new = await store.accept(world.note(collapse_id="c"))
    assert new.collapsed_id == old.id
    live = await store.accept(world.note())
    acks = [(dev, gone.id), (dev, old.id), (dev, live.id), (dev, live.id), (dev, 10**12)]
    assert await store.mark_delivered_many(acks) == 1
    assert (await store.status(world.app.app_id, gone.apns_id)).status is Status.DISCARDED  # type: ignore[union-attr]
    assert (await store.status(world.app.app_id, old.apns_id)).status is Status.COLLAPSED  # type: ignore[union-attr]
    assert (await store.status(world.app.app_id, live.apns_id)).status is Status.DELIVERED  # type: ignore[union-attr]
    assert [r.id for r in await store.backlog(dev, 10)] == [new.id]


async def test_status_unknown_is_none(store: Any) -> None:
    assert await store.status(1, "00000000-0000-4000-8000-000000000000") is None


async def test_status_names_a_notification_only_by_its_stored_form(world: World) -> None:
    # apns-ids are stored lowercase (PostgreSQL: as a uuid since migration 028);
    # another spelling or a malformed id is no notification, not an error.
    row = await world.store.accept(world.note())
    found = await world.store.status(world.app.app_id, row.apns_id)
    assert found is not None and found.apns_id == row.apns_id and isinstance(found.apns_id, str)
    for other in (row.apns_id.upper(), row.apns_id.replace("-", ""), "not-a-uuid", "", row.apns_id + "0"):
        assert await world.store.status(world.app.app_id, other) is None, other


async def test_purge_deletes_only_old_terminal_rows(world: World) -> None:
    done = await world.store.accept(world.note())
    pending = await world.store.accept(world.note())
    await world.store.mark_delivered(world.device.device_id, [done.id])
    assert await world.store.purge(int(time.time() * 1000) + 1000) == 1
    assert await world.store.status(world.app.app_id, done.apns_id) is None
    assert await world.store.status(world.app.app_id, pending.apns_id) is not None


async def test_retention_counts_from_the_end_not_the_acceptance(world: World) -> None:
    # Accepted before the cutoff, ended after it: kept (retention runs from done_at_ms).
    row = await world.store.accept(world.note())
    await asyncio.sleep(0.05)
    cutoff = int(time.time() * 1000)
    await asyncio.sleep(0.05)
    await world.store.mark_delivered(world.device.device_id, [row.id])
    assert await world.store.purge(cutoff) == 0
    assert await world.store.status(world.app.app_id, row.apns_id) is not None
    assert await world.store.purge(int(time.time() * 1000) + 1000) == 1


async def test_durable_across_reopen(world: World, store_factory: Any) -> None:
    res = await world.store.accept(world.note(priority=5))
    await world.store.close()
    reopened = store_factory()
    await reopened.open()
    try:
        rows = await reopened.backlog(world.device.device_id, 10)
        assert [(r.id, r.priority) for r in rows] == [(res.id, 5)]
        assert (await reopened.get_token(world.token)) is not None
    finally:
        await reopened.close()


async def test_pending_devices_by_acceptance_window(world: World) -> None:
    store = world.store
    t0 = int(time.time() * 1000)
    pending = await store.accept(world.note())
    acked = await store.accept(world.note())
    await store.mark_delivered(world.device.device_id, [acked.id])
    t1 = int(time.time() * 1000) + 1
    assert await store.pending_devices(t0 - 1000, t1) == [world.device.device_id]
    # outside the window: nothing
    assert await store.pending_devices(t1, t1 + 60_000) == []
    assert await store.pending_devices(t0 - 60_000, t0 - 1000) == []
    # once nothing of the device is pending any more, it is not listed
    await store.mark_delivered(world.device.device_id, [pending.id])
    assert await store.pending_devices(t0 - 1000, t1) == []
