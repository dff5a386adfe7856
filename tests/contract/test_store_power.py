"""Contract (PostgreSQL and SQLite): quiet hours, the background budget and
Live Activity order (015_power.sql, gateway/store/power_rules.py)."""

from __future__ import annotations

import json

from schemas.notification import Notification, Status
from schemas.quiet_hours import QuietHours
from tests.contract.conftest import World

HOUR_MS = 3_600_000
T0 = 1_700_000_000_000
BACKGROUND = b'{"aps":{"content-available":1}}'


async def test_quiet_hours_set_read_and_clear(world: World) -> None:
    store, device_id = world.store, world.device.device_id
    assert await store.get_quiet_hours(device_id) is None
    quiet = QuietHours.parse("22:30", "06:45", "America/New_York")
    await store.set_quiet_hours(device_id, quiet)
    assert await store.get_quiet_hours(device_id) == quiet
    later = QuietHours.parse("23:00", "07:00", "Asia/Tokyo")
    await store.set_quiet_hours(device_id, later)
    assert await store.get_quiet_hours(device_id) == later
    await store.set_quiet_hours(device_id, None)
    assert await store.get_quiet_hours(device_id) is None


async def _state(world: World, n: Notification) -> tuple[Status, str | None]:
    st = await world.store.status(world.app.app_id, n.apns_id)
    assert st is not None
    return st.status, st.reason


async def test_background_budget_keeps_only_the_newest_over_budget(world: World) -> None:
    store, device_id = world.store, world.device.device_id
    # The contract fixture caps the backlog at 5 per token: five pushes, budget 3.
    notes = [world.note(push_type="background", priority=5, payload=BACKGROUND) for _ in range(5)]
    ids = [(await store.accept(n)).id for n in notes]
    over, retry_at = await store.admit_background(device_id, ids, 3, HOUR_MS, T0)
    assert over == ids[3:] and retry_at == T0 + HOUR_MS
    # The older of the two over budget is settled; the newest waits (pending).
    assert await _state(world, notes[3]) == (Status.SUPERSEDED, "BackgroundBudget")
    assert await _state(world, notes[4]) == (Status.PENDING, None)
    assert {r.id for r in await store.backlog(device_id, 100)} == {ids[0], ids[1], ids[2], ids[4]}
    # A resend of an already counted push passes without counting again.
    assert await store.admit_background(device_id, ids[:3], 3, HOUR_MS, T0 + 1000) == ([], None)
    assert await store.admit_background(device_id, [ids[4]], 3, HOUR_MS, T0 + 1000) == ([ids[4]], T0 + HOUR_MS)
    # Once the first sends are an hour old the budget is free again.
    assert await store.admit_background(device_id, [ids[4]], 3, HOUR_MS, T0 + HOUR_MS) == ([], None)


async def test_background_budget_is_per_device(world: World) -> None:
    store = world.store
    other, _ = await store.create_device(world.app.app_id)
    assert await store.admit_background(world.device.device_id, [1, 2], 2, HOUR_MS, T0) == ([], None)
    assert await store.admit_background(other.device_id, [3, 4], 2, HOUR_MS, T0) == ([], None)
    assert await store.admit_background(other.device_id, [5], 2, HOUR_MS, T0 + 5) == ([5], T0 + HOUR_MS)


def _activity(world: World, event: str, ts: int) -> Notification:
    aps = {"event": event, "timestamp": ts, "content-state": {"score": ts}}
    return world.note(
        push_type="liveactivity",
        topic="com.example.app.push-type.liveactivity",
        payload=json.dumps({"aps": aps}).encode(),
    )


async def test_live_activity_stale_and_ended_updates_are_settled(world: World) -> None:
    store = world.store
    notes = [
        _activity(world, "update", 100),
        _activity(world, "update", 90),  # older than the one before: stale
        _activity(world, "end", 120),
        _activity(world, "update", 130),  # after the end: dropped
    ]
    ids = [(await store.accept(n)).id for n in notes]
    token = world.token
    updates = [(i, token, json.loads(n.payload)["aps"]["event"], json.loads(n.payload)["aps"]["timestamp"])
               for i, n in zip(ids, notes, strict=True)]  # fmt: skip
    assert await store.admit_live_activities(updates[:1], T0) == []
    assert await store.admit_live_activities(updates[1:], T0) == [ids[1], ids[3]]
    assert await _state(world, notes[1]) == (Status.STALE, "StaleTimestamp")
    assert await _state(world, notes[3]) == (Status.ACTIVITY_ENDED, "ActivityEnded")
    # A resend of the end (lost connection) still passes; an earlier update does not.
    assert await store.admit_live_activities([updates[2]], T0) == []
    assert await store.admit_live_activities([updates[0]], T0) == [ids[0]]
    # A new start on the token begins a new activity.
    start = _activity(world, "start", 10)
    start_id = (await store.accept(start)).id
    assert await store.admit_live_activities([(start_id, token, "start", 10.0)], T0) == []
    assert await store.admit_live_activities([(start_id + 1000, token, "update", 11.0)], T0) == []


async def test_quiet_hours_go_with_their_device(world: World) -> None:
    store = world.store
    kept, _ = await store.create_device(world.app.app_id)
    quiet = QuietHours.parse("22:00", "07:00", "Europe/Paris")
    await store.set_quiet_hours(world.device.device_id, quiet)
    await store.set_quiet_hours(kept.device_id, quiet)
    await store.delete_device(world.device.device_id)
    assert await store.get_quiet_hours(world.device.device_id) is None
    # A late setting for the deleted device (its socket still open) is a no-op, not an error.
    await store.set_quiet_hours(world.device.device_id, quiet)
    assert await store.get_quiet_hours(world.device.device_id) is None
    assert await store.get_quiet_hours(kept.device_id) == quiet


async def test_retention_purges_old_activity_order_and_background_sends(world: World) -> None:
    store, device_id, token = world.store, world.device.device_id, world.token
    assert await store.admit_live_activities([(1, token, "end", 100.0)], T0) == []
    assert await store.admit_background(device_id, [2, 3], 2, HOUR_MS, T0) == ([], None)
    # Inside retention and the budget's hour nothing goes: the end still drops updates.
    assert await store.purge_power_state(T0, T0 - 1) == 0
    assert await store.admit_live_activities([(4, token, "update", 200.0)], T0 + 1) == [4]
    assert await store.admit_background(device_id, [5], 2, HOUR_MS, T0 + 1) == ([5], T0 + HOUR_MS)
    # Past both, the rows are gone: the activity's order and the sends are forgotten.
    assert await store.purge_power_state(T0 + 2, T0) == 3
    assert await store.admit_live_activities([(6, token, "update", 50.0)], T0 + 3) == []
    assert await store.admit_background(device_id, [7, 8], 2, HOUR_MS, T0 + 3) == ([], None)
