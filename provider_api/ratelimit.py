"""Provider rate limits: token buckets per app and per device token.

Two limits, both off by default (0 = unlimited), both answered with
``429 {"reason": "TooManyRequests"}`` as Apple answers them:

``app_rate_per_s`` (PUSHGW_APP_RATE_PER_S)
    Send requests per second one app may make through the REST API.  Each
    send request costs one token whatever it carries (single, batch, user or
    topic fan-out: the work a batch saves the server is the point of
    batching).  The bucket holds ``max(1, rate)`` tokens, so a quiet app may
    burst one second's worth.
``token_rate_per_s`` (PUSHGW_TOKEN_RATE_PER_S)
    Notifications per second to one device token, Apple's "too many
    consecutive pushes to the same token".  Every notification to the token
    costs one token, in every kind of send; in a batch or user send only the
    items over the limit fail, each with its own 429.  Bucket size
    ``max(1, rate)``.

Where the buckets live:

* embedded (no ``redis_url``): in this process (``LocalBuckets``);
* cluster (``redis_url`` set): in Redis, shared by every API process, through
  a small Lua token bucket (``RedisBuckets``) that reads Redis's own clock so
  processes on machines with skewed clocks agree.  If Redis cannot be reached
  the limiter fails open (and counts ``pushgw_ratelimit_errors_total``): a
  rate limit must never turn a healthy durable store into an outage.

A rejected request is rejected before anything is stored, so retrying it
after a pause is always safe.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from prometheus_client import Counter
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from gateway.config import Config
from schemas.errors import TooManyRequests

log = logging.getLogger("pushgw.ratelimit")

REJECTED = Counter("pushgw_ratelimit_rejected_total", "Requests or notifications refused by a rate limit", ["scope"])
ERRORS = Counter("pushgw_ratelimit_errors_total", "Rate-limit checks that failed open because Redis was unreachable")
_REJECTED_APP = REJECTED.labels("app")
_REJECTED_TOKEN = REJECTED.labels("token")


class Buckets(Protocol):
    async def take(self, keys: Sequence[str], rate: float, burst: float) -> list[bool]:
        """Take one token from each key's bucket (in order; a key may repeat).

        Returns, per key, whether a token was available.
        """

    async def close(self) -> None: ...


class LocalBuckets:
    """In-process buckets: ``{key: [tokens, last_refill_s]}``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_keys: int = 200_000) -> None:
        self._clock = clock
        self._max_keys = max_keys
        self._state: dict[str, list[float]] = {}

    async def take(self, keys: Sequence[str], rate: float, burst: float) -> list[bool]:
        return self.take_now(keys, rate, burst)

    def take_now(self, keys: Sequence[str], rate: float, burst: float) -> list[bool]:
        now = self._clock()
        out: list[bool] = []
        state = self._state
        for key in keys:
            entry = state.get(key)
            if entry is None:
                if len(state) >= self._max_keys:
                    self._evict_full(now, rate, burst)
                entry = state[key] = [burst, now]
            else:
                entry[0] = min(burst, entry[0] + (now - entry[1]) * rate)
                entry[1] = now
            if entry[0] >= 1.0:
                entry[0] -= 1.0
                out.append(True)
            else:
                out.append(False)
        return out

    def _evict_full(self, now: float, rate: float, burst: float) -> None:
        # A bucket that has refilled completely is indistinguishable from an
        # absent one, so forgetting it changes no decision; this keeps memory
        # bounded by the number of keys active within burst/rate seconds.
        stale = [k for k, (tokens, at) in self._state.items() if tokens + (now - at) * rate >= burst]
        for key in stale:
            del self._state[key]
        if len(self._state) >= self._max_keys:
            # Still full of busy keys: drop the oldest half rather than grow.
            for key in list(self._state)[: self._max_keys // 2]:
                del self._state[key]

    async def close(self) -> None:
        self._state.clear()


# One bucket per key, on the server's clock.  Single-key so that it works
# unchanged on Redis Cluster; batches pipeline one call per key.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then
  tokens = burst
else
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
end
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return ok
"""


class RedisBuckets:
    """Buckets shared by every process through Redis (cluster mode)."""

    def __init__(self, client: aioredis.Redis, prefix: str = "pushgw:rl:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_LUA)

    @classmethod
    def from_url(cls, url: str) -> RedisBuckets:
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=32, timeout=2)
        return cls(aioredis.Redis(connection_pool=pool))

    async def take(self, keys: Sequence[str], rate: float, burst: float) -> list[bool]:
        try:
            if len(keys) == 1:
                res: list[Any] = [await self._script(keys=[self._prefix + keys[0]], args=[rate, burst])]
            else:
                pipe = self._client.pipeline(transaction=False)
                for key in keys:
                    await self._script(keys=[self._prefix + key], args=[rate, burst], client=pipe)
                res = await pipe.execute()
        except (RedisError, OSError) as exc:
            ERRORS.inc()
            log.warning("rate limit check failed open: %s", exc)
            return [True] * len(keys)
        return [bool(int(r)) for r in res]

    async def close(self) -> None:
        await self._client.aclose()


class RateLimits:
    """The two provider limits of one API process."""

    def __init__(self, app_rate: float, token_rate: float, buckets: Buckets | None = None) -> None:
        self.app_rate = app_rate
        self.token_rate = token_rate
        self._buckets: Buckets = buckets if buckets is not None else LocalBuckets()

    @classmethod
    def from_config(cls, cfg: Config) -> RateLimits:
        buckets: Buckets | None = None
        if cfg.redis_url and (cfg.app_rate_per_s > 0 or cfg.token_rate_per_s > 0):
            buckets = RedisBuckets.from_url(cfg.redis_url)
        return cls(cfg.app_rate_per_s, cfg.token_rate_per_s, buckets)

    @property
    def limits_tokens(self) -> bool:
        return self.token_rate > 0

    async def check_app(self, app_id: int) -> None:
        """Raise TooManyRequests if the app is over its request rate."""
        if self.app_rate <= 0:
            return
        (ok,) = await self._buckets.take([f"app:{app_id}"], self.app_rate, max(1.0, self.app_rate))
        if not ok:
            _REJECTED_APP.inc()
            raise TooManyRequests("app rate limit")

    async def allow_tokens(self, tokens: Sequence[str]) -> list[bool]:
        """Per notification: may it go to its token now?  Costs one each."""
        if self.token_rate <= 0 or not tokens:
            return [True] * len(tokens)
        out = await self._buckets.take([f"tok:{t}" for t in tokens], self.token_rate, max(1.0, self.token_rate))
        rejected = out.count(False)
        if rejected:
            _REJECTED_TOKEN.inc(rejected)
        return out

    async def check_token(self, token: str) -> None:
        (ok,) = await self.allow_tokens([token])
        if not ok:
            raise TooManyRequests("token rate limit")

    async def close(self) -> None:
        await self._buckets.close()
