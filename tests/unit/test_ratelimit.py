"""Token buckets: the in-process logic with a fake clock, the Redis Lua
bucket against the real throwaway Redis, and the 429 the limits raise."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from gateway.config import Config
from provider_api.ratelimit import LocalBuckets, RateLimits, RedisBuckets
from schemas.errors import TooManyRequests


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_local_bucket_allows_burst_then_refuses() -> None:
    clock = FakeClock()
    b = LocalBuckets(clock)
    assert b.take_now(["k"] * 5, rate=2.0, burst=3.0) == [True, True, True, False, False]


def test_local_bucket_refills_at_rate() -> None:
    clock = FakeClock()
    b = LocalBuckets(clock)
    assert b.take_now(["k"] * 2, rate=2.0, burst=2.0) == [True, True]
    clock.now += 0.25  # half a token
    assert b.take_now(["k"], rate=2.0, burst=2.0) == [False]
    clock.now += 0.5  # 0.5 + 1.0 tokens
    assert b.take_now(["k"], rate=2.0, burst=2.0) == [True]
    clock.now += 100  # refill is capped at the burst
    assert b.take_now(["k"] * 3, rate=2.0, burst=2.0) == [True, True, False]


def test_local_buckets_are_per_key() -> None:
    b = LocalBuckets(FakeClock())
    assert b.take_now(["a", "b", "a", "b"], rate=1.0, burst=1.0) == [True, True, False, False]


def test_local_eviction_forgets_only_refilled_buckets() -> None:
    clock = FakeClock()
    b = LocalBuckets(clock, max_keys=3)
    b.take_now(["old"], rate=0.1, burst=1.0)
    clock.now += 9
    b.take_now(["x", "y"], rate=0.1, burst=1.0)
    clock.now += 1.5  # "old" has refilled; x and y are still nearly empty
    b.take_now(["z"], rate=0.1, burst=1.0)
    assert set(b._state) == {"x", "y", "z"}
    # Forgetting changed no decision: x is still limited, old still allowed.
    assert b.take_now(["x", "old"], rate=0.1, burst=1.0) == [False, True]


async def test_redis_bucket_is_shared_between_processes(redis_url: str) -> None:
    # Two clients stand for two API processes: they share one bucket.
    one = RedisBuckets(aioredis.Redis.from_url(redis_url))
    two = RedisBuckets(aioredis.Redis.from_url(redis_url))
    try:
        got = [await one.take(["app:1"], 1.0, 3.0), await two.take(["app:1"], 1.0, 3.0)]
        got.append(await two.take(["app:1", "app:1"], 1.0, 3.0))
        assert got == [[True], [True], [True, False]]
        assert await one.take(["app:2"], 1.0, 3.0) == [True]
    finally:
        await one.close()
        await two.close()


async def test_redis_bucket_refills(redis_url: str) -> None:
    b = RedisBuckets(aioredis.Redis.from_url(redis_url))
    try:
        assert await b.take(["t"] * 3, 20.0, 2.0) == [True, True, False]
        await asyncio.sleep(0.12)  # 20/s -> at least two tokens back
        assert await b.take(["t"] * 2, 20.0, 2.0) == [True, True]
    finally:
        await b.close()


async def test_redis_bucket_fails_open_when_unreachable() -> None:
    b = RedisBuckets(aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2))
    try:
        assert await b.take(["k", "k"], 1.0, 1.0) == [True, True]
    finally:
        await b.close()


async def test_limits_raise_too_many_requests() -> None:
    limits = RateLimits(app_rate=1.0, token_rate=1.0, buckets=LocalBuckets(FakeClock()))
    await limits.check_app(7)
    with pytest.raises(TooManyRequests) as err:
        await limits.check_app(7)
    assert (err.value.status, err.value.reason) == (429, "TooManyRequests")
    await limits.check_app(8)  # another app has its own bucket
    assert await limits.allow_tokens(["aa", "aa", "bb"]) == [True, False, True]
    with pytest.raises(TooManyRequests):
        await limits.check_token("bb")


async def test_zero_means_unlimited() -> None:
    limits = RateLimits(app_rate=0.0, token_rate=0.0, buckets=LocalBuckets(FakeClock()))
    for _ in range(1000):
        await limits.check_app(1)
    assert await limits.allow_tokens(["aa"] * 1000) == [True] * 1000


async def test_from_config_picks_backend(redis_url: str) -> None:
    embedded = RateLimits.from_config(Config(app_rate_per_s=5))
    cluster = RateLimits.from_config(Config(redis_url=redis_url, app_rate_per_s=5))
    try:
        assert isinstance(embedded._buckets, LocalBuckets)
        assert isinstance(cluster._buckets, RedisBuckets)
    finally:
        await embedded.close()
        await cluster.close()
