"""Contract: recurring schedules and digest items (migrations 020, 021), on both backends."""

from __future__ import annotations

import uuid
from typing import Any

from gateway.store.schedules_store import DigestItem, DigestRule, Schedule
from tests.contract.conftest import World

T0 = 1_800_000_000_000


def _schedule(world: World, **kw: Any) -> Schedule:
    fields: dict[str, Any] = dict(
        schedule_id=str(uuid.uuid4()), app_id=world.app.app_id, target_kind="token", target=world.token,
        topic=None, push_type="alert", priority=10, ttl_s=None, collapse_id=None,
        payloads=b'[{"aps":{"alert":"a"}},{"aps":{"alert":"b"}}]', every_s=60, cron=None, timezone="UTC",
        next_slot_ms=T0, next_index=0, paused=False, created_at_ms=T0 - 1,
    )  # fmt: skip
    fields.update(kw)
    return Schedule(**fields)


async def _other_app(world: World) -> Any:
    await world.store.create_team("TEAMOTHER1", "Other")
    return await world.store.create_app("TEAMOTHER1", "com.example.other")


async def test_schedule_round_trip_is_scoped_by_app(world: World) -> None:
    s = _schedule(world, collapse_id="c", ttl_s=30)
    created = await world.store.create_schedule(s)
    assert created == s
    other = await _other_app(world)
    assert await world.store.get_schedule(world.app.app_id, s.schedule_id) == s
    assert await world.store.get_schedule(other.app_id, s.schedule_id) is None
    assert await world.store.list_schedules(other.app_id) == []
    assert not await world.store.delete_schedule(other.app_id, s.schedule_id)
    assert await world.store.set_schedule_paused(other.app_id, s.schedule_id, True) is None
    assert [x.schedule_id for x in await world.store.list_schedules(world.app.app_id)] == [s.schedule_id]
    assert await world.store.delete_schedule(world.app.app_id, s.schedule_id)
    assert await world.store.get_schedule(world.app.app_id, s.schedule_id) is None


async def test_due_skips_paused_and_future(world: World) -> None:
    due = await world.store.create_schedule(_schedule(world))
    await world.store.create_schedule(_schedule(world, next_slot_ms=T0 + 1))
    paused = await world.store.create_schedule(_schedule(world, paused=True))
    assert [s.schedule_id for s in await world.store.due_schedules(T0)] == [due.schedule_id]
    resumed = await world.store.set_schedule_paused(world.app.app_id, paused.schedule_id, False, T0 - 5, 7)
    assert resumed is not None and not resumed.paused and resumed.next_slot_ms == T0 - 5 and resumed.next_index == 7
    assert {s.schedule_id for s in await world.store.due_schedules(T0)} == {due.schedule_id, paused.schedule_id}
    again = await world.store.set_schedule_paused(world.app.app_id, due.schedule_id, True)
    assert again is not None and again.paused and again.next_slot_ms == T0  # pausing keeps the slot


async def test_advance_is_a_compare_and_set(world: World) -> None:
    s = await world.store.create_schedule(_schedule(world))
    args = dict(fired_slot_ms=T0, fired=1, skipped=2, error=None)
    assert await world.store.advance_schedule(s.schedule_id, T0, T0 + 60_000, 3, **args)
    # A second worker that read the same row loses: the slot moved on.
    assert not await world.store.advance_schedule(s.schedule_id, T0, T0 + 60_000, 3, **args)
    got = await world.store.get_schedule(world.app.app_id, s.schedule_id)
    assert got is not None
    assert (got.next_slot_ms, got.next_index, got.fired, got.skipped, got.last_slot_ms) == (T0 + 60_000, 3, 1, 2, T0)
    await world.store.advance_schedule(
        s.schedule_id, T0 + 60_000, T0 + 120_000, 4, fired_slot_ms=None, fired=0, skipped=1, error="Unregistered"
    )
    got = await world.store.get_schedule(world.app.app_id, s.schedule_id)
    assert got is not None and got.last_slot_ms == T0 and got.skipped == 3 and got.last_error == "Unregistered"


def _item(world: World, at_ms: int, **kw: Any) -> DigestItem:
    fields: dict[str, Any] = dict(
        id=0, app_id=world.app.app_id, apns_id=str(uuid.uuid4()), token=world.token, topic="com.example.app",
        device_id=world.device.device_id, kind="local", priority=5, payload=b'{"aps":{"alert":"x"}}',
        accepted_at_ms=at_ms, window_end_ms=0, summary_apns_id=None, summarized_at_ms=None,
    )  # fmt: skip
    fields.update(kw)
    return DigestItem(**fields)


async def test_digest_rule_round_trip(world: World) -> None:
    assert await world.store.get_digest_rule(world.app.app_id) is None
    rule = DigestRule(app_id=world.app.app_id, window_s=60, max_priority=5, push_types=("alert",), updated_at_ms=1)
    assert await world.store.set_digest_rule(rule) == rule
    changed = DigestRule(app_id=world.app.app_id, window_s=30, max_priority=10, push_types=("alert",), updated_at_ms=2)
    await world.store.set_digest_rule(changed)
    assert await world.store.get_digest_rule(world.app.app_id) == changed
    assert await world.store.delete_digest_rule(world.app.app_id)
    assert not await world.store.delete_digest_rule(world.app.app_id)


async def test_items_join_the_open_window_of_their_token(world: World) -> None:
    first, dup = await world.store.add_digest_item(_item(world, T0), 60_000)
    assert not dup and first.window_end_ms == T0 + 60_000 and first.id > 0
    second, _ = await world.store.add_digest_item(_item(world, T0 + 30_000), 60_000)
    assert second.window_end_ms == T0 + 60_000  # joined, did not extend
    again, dup = await world.store.add_digest_item(_item(world, T0 + 40_000, apns_id=first.apns_id), 60_000)
    assert dup and again.id == first.id
    later, _ = await world.store.add_digest_item(_item(world, T0 + 60_000), 60_000)
    assert later.window_end_ms == T0 + 120_000  # the first window has ended: a new one
    assert await world.store.due_digests(T0 + 59_999) == []
    assert await world.store.due_digests(T0 + 60_000) == [(world.app.app_id, world.token)]
    window = await world.store.digest_window(world.app.app_id, world.token, T0 + 60_000)
    assert [i.id for i in window] == [first.id, second.id]


async def test_mark_digested_points_items_at_the_summary(world: World) -> None:
    a, _ = await world.store.add_digest_item(_item(world, T0), 1000)
    b, _ = await world.store.add_digest_item(_item(world, T0 + 1), 1000)
    assert await world.store.mark_digested([a.id, b.id], "summary-id", T0 + 2000) == 2
    assert await world.store.mark_digested([a.id], "another", T0 + 3000) == 0  # never re-pointed
    got = await world.store.get_digest_item(world.app.app_id, a.apns_id)
    assert got is not None and got.summary_apns_id == "summary-id" and got.summarized_at_ms == T0 + 2000
    assert await world.store.due_digests(T0 + 5000) == []
    assert await world.store.purge_digest_items(T0 + 2000) == 0
    assert await world.store.purge_digest_items(T0 + 2001) == 2
    assert await world.store.get_digest_item(world.app.app_id, a.apns_id) is None
