"""Device sessions in batches (gateway/store/sessions_store.py) on both backends:
``connect_devices`` answers what the one-by-one calls would, ``backlog_many``
returns the pages ``backlog`` would."""

from __future__ import annotations

import time

from gateway.store.hashing import new_device_id
from schemas.quiet_hours import QuietHours
from tests.contract.conftest import World


async def test_connect_devices_checks_each_credential_and_reads_app_overflow_and_quiet(world: World) -> None:
    store = world.store
    other, other_secret = await store.create_device(world.app.app_id)
    quiet = QuietHours.parse("22:00", "07:00", "Europe/Berlin")
    await store.set_quiet_hours(other.device_id, quiet)
    for _ in range(7):  # backlog_cap=5: two dropped for the device
        await store.accept(world.note())
    dev = world.device.device_id

    got = await store.connect_devices(
        [(dev, world.secret), (other.device_id, "wrong"), (new_device_id(), "x"), (other.device_id, other_secret)]
    )
    mine, wrong, unknown, theirs = got
    assert wrong is None and unknown is None
    assert mine is not None and theirs is not None
    assert mine.device == await store.get_device(dev) and mine.bundle_id == "com.example.app"
    assert (mine.overflow, mine.quiet) == (2, None)
    assert (theirs.device.device_id, theirs.overflow, theirs.quiet) == (other.device_id, 0, quiet)
    # A read only: the overflow is still there for take_overflow.
    assert (await store.connect_devices([(dev, world.secret)]))[0].overflow == 2
    assert await store.take_overflow(dev) == 2
    assert (await store.connect_devices([(dev, world.secret)]))[0].overflow == 0
    assert await store.connect_devices([]) == []


async def test_backlog_many_returns_the_pages_backlog_would(world: World) -> None:
    store = world.store
    other, _ = await store.create_device(world.app.app_id)
    token = (await store.issue_token(other.device_id, "com.example.app", _prod())).token
    for prio in [5, 10, 1, 10]:  # with the held one below: at the backlog cap (5), nothing dropped
        await store.accept(world.note(priority=prio))
    for prio in [10, 5]:
        await store.accept(world.note(priority=prio, token=token, device_id=other.device_id))
    held = await store.accept(world.note(deliver_at_ms=int(time.time() * 1000) + 60_000))
    dev = world.device.device_id
    first = await store.backlog(dev, 2)
    requests = [
        (dev, 2, None),
        (other.device_id, 10, None),
        (new_device_id(), 10, None),
    ]
    pages = await store.backlog_many(requests)
    assert [[r.id for r in p] for p in pages] == [
        [r.id for r in first],
        [r.id for r in await store.backlog(other.device_id, 10)],
        [],
    ]
    after = (first[-1].priority, first[-1].id)
    [rest] = await store.backlog_many([(dev, 10, after)])
    assert [r.id for r in rest] == [r.id for r in await store.backlog(dev, 10, after=after)]
    assert held.id not in {r.id for r in rest} and len(first + rest) == 4
    assert await store.backlog_many([]) == []


def _prod():  # type: ignore[no-untyped-def]
    from schemas.notification import Environment

    return Environment.PRODUCTION
