"""Presence contract: Redis and in-process behave the same."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from gateway.bus.base import PresenceEntry
from gateway.bus.local import LocalPresence
from gateway.bus.redis_bus import make_client
from gateway.bus.redis_presence import RedisPresence

PresenceT = LocalPresence | RedisPresence


@pytest.fixture(params=["local", "redis"])
async def presence(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[PresenceT]:
    p: PresenceT
    if request.param == "redis":
        p = RedisPresence(make_client(redis_url), owns_client=True)
    else:
        p = LocalPresence()
    yield p
    await p.close()


async def test_claim_epochs_strictly_increase_and_return_the_replaced_entry(presence: PresenceT) -> None:
    e1, old1 = await presence.claim("dev1", "s1", ttl_s=30)
    assert old1 is None
    e2, old2 = await presence.claim("dev1", "s2", ttl_s=30)
    assert e2 > e1
    assert old2 == PresenceEntry("s1", e1)
    e3, old3 = await presence.claim("dev1", "s2", ttl_s=30)
    assert e3 > e2
    assert old3 == PresenceEntry("s2", e2)
    # Another device has its own entry.
    _, other = await presence.claim("dev2", "s1", ttl_s=30)
    assert other is None


async def test_epochs_keep_increasing_across_release(presence: PresenceT) -> None:
    e1, _ = await presence.claim("dev", "s1", ttl_s=30)
    await presence.release("dev", e1)
    e2, old = await presence.claim("dev", "s1", ttl_s=30)
    assert old is None
    assert e2 > e1


async def test_lookup_keeps_order_and_reports_absent_devices(presence: PresenceT) -> None:
    ea, _ = await presence.claim("a", "s1", ttl_s=30)
    eb, _ = await presence.claim("b", "s2", ttl_s=30)
    assert await presence.lookup(["b", "missing", "a"]) == [PresenceEntry("s2", eb), None, PresenceEntry("s1", ea)]
    assert await presence.lookup([]) == []


async def test_release_with_a_stale_epoch_does_nothing(presence: PresenceT) -> None:
    e1, _ = await presence.claim("dev", "s1", ttl_s=30)
    e2, _ = await presence.claim("dev", "s2", ttl_s=30)
    await presence.release("dev", e1)  # the old connection closing late
    assert await presence.lookup(["dev"]) == [PresenceEntry("s2", e2)]
    await presence.release("dev", e2)
    assert await presence.lookup(["dev"]) == [None]


async def test_entries_expire_and_refresh_extends_only_current_holders(presence: PresenceT) -> None:
    e_kept, _ = await presence.claim("kept", "s1", ttl_s=1)
    e_stale, _ = await presence.claim("stale", "s1", ttl_s=1)
    e_other, _ = await presence.claim("moved", "s1", ttl_s=1)
    _, _ = await presence.claim("expires", "s1", ttl_s=1)
    await presence.refresh(
        "s1",
        [
            ("kept", e_kept),  # current: extended
            ("stale", e_stale - 1),  # wrong epoch: not extended
            ("nobody", 7),  # absent: must not be created
        ],
        ttl_s=30,
    )
    await presence.refresh("s2", [("moved", e_other)], ttl_s=30)  # wrong shard: not extended
    await asyncio.sleep(1.3)
    got = await presence.lookup(["kept", "stale", "moved", "expires", "nobody"])
    assert got == [PresenceEntry("s1", e_kept), None, None, None, None]


async def test_refresh_of_many_entries(presence: PresenceT) -> None:
    # Claimed concurrently with a short TTL; the refresh must carry every entry
    # past the moment the last short TTL ran out.
    ids = [f"d{i}" for i in range(1200)]
    claims = await asyncio.gather(*(presence.claim(d, "s1", ttl_s=3) for d in ids))
    claimed_at = time.monotonic()
    epochs = {d: c[0] for d, c in zip(ids, claims, strict=True)}
    await presence.refresh("s1", list(epochs.items()), ttl_s=30)
    await asyncio.sleep(max(0.0, claimed_at + 3.3 - time.monotonic()))
    got = await presence.lookup(list(epochs))
    assert got == [PresenceEntry("s1", e) for e in epochs.values()]


async def test_claim_many_claims_in_order_like_single_claims(presence: PresenceT) -> None:
    import uuid

    a, b = f"dev-{uuid.uuid4().hex}", f"dev-{uuid.uuid4().hex}"
    e0, _ = await presence.claim(a, "s1", ttl_s=30)
    # The same device twice in one batch: the second claim replaces the first.
    (ea, olda), (eb, oldb), (ea2, olda2) = await presence.claim_many([a, b, a], "s2", ttl_s=30)
    assert olda == PresenceEntry("s1", e0) and ea > e0
    assert oldb is None
    assert ea2 > ea and olda2 == PresenceEntry("s2", ea)
    assert await presence.lookup([a, b]) == [PresenceEntry("s2", ea2), PresenceEntry("s2", eb)]
    assert await presence.claim_many([], "s2", ttl_s=30) == []
