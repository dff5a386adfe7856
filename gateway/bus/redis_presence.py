"""Presence in Redis: device -> (shard, epoch) with a TTL.

Keys (the ``{dev:<id>}`` hash tag keeps both keys of a device in one
cluster slot, so the Lua scripts stay single-slot):
- ``pushgw:{dev:<id>}:at``    "<epoch>|<shard>", expires after ttl_s
- ``pushgw:{dev:<id>}:epoch`` INCR counter behind the epochs

The counter also carries a (long) TTL so devices that went away for good do
not leave a key forever; claim and refresh extend it, so it can only expire
after the device has been absent for ``EPOCH_KEEP_S`` and no older
connection can be alive to be confused by a restarted count.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from gateway.bus.base import PresenceEntry
from schemas.errors import BusUnavailable

EPOCH_KEEP_S = 7 * 24 * 3600

# KEYS: at, epoch   ARGV: shard, ttl_s, keep_s   -> {epoch, old value or ""}
_CLAIM = """
local e = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[3])
local old = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], e .. '|' .. ARGV[1], 'EX', ARGV[2])
return {e, old or ''}
"""

# KEYS: at   ARGV: epoch   -> 1 if removed
_RELEASE = """
local v = redis.call('GET', KEYS[1])
if v and string.match(v, '^(%d+)|') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: at, epoch   ARGV: "<epoch>|<shard>", ttl_s, keep_s   -> 1 if extended
_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
"""


def presence_key(device_id: str) -> str:
    return f"pushgw:{{dev:{device_id}}}:at"


def epoch_key(device_id: str) -> str:
    return f"pushgw:{{dev:{device_id}}}:epoch"


def _parse(value: bytes | str | None) -> PresenceEntry | None:
    if not value:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    epoch, _, shard = text.partition("|")
    return PresenceEntry(shard, int(epoch))


class RedisPresence:
    """Errors surface as ``BusUnavailable``; callers decide (routing swallows it,
    a connecting session may retry or proceed with the drain alone)."""

    def __init__(self, client: aioredis.Redis, *, owns_client: bool = False, refresh_batch: int = 500) -> None:
        self._redis = client
        self._owns_client = owns_client
        self._refresh_batch = refresh_batch
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        self._refresh = client.register_script(_REFRESH)

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose(close_connection_pool=True)

    async def claim(self, device_id: str, shard_id: str, ttl_s: int) -> tuple[int, PresenceEntry | None]:
        if "|" in shard_id:
            raise ValueError("shard id must not contain '|'")
        try:
            epoch, old = await self._claim(
                keys=[presence_key(device_id), epoch_key(device_id)], args=[shard_id, ttl_s, EPOCH_KEEP_S]
            )
        except (RedisError, OSError) as exc:
            raise BusUnavailable(f"presence claim failed: {exc}") from exc
        return int(epoch), _parse(old)

    async def claim_many(
        self, device_ids: Sequence[str], shard_id: str, ttl_s: int
    ) -> list[tuple[int, PresenceEntry | None]]:
        """``claim`` for many devices in one pipeline (a shard's connect storm), in order."""
        if "|" in shard_id:
            raise ValueError("shard id must not contain '|'")
        if not device_ids:
            return []
        try:
            pipe = self._redis.pipeline(transaction=False)
            for device_id in device_ids:
                await self._claim(
                    keys=[presence_key(device_id), epoch_key(device_id)],
                    args=[shard_id, ttl_s, EPOCH_KEEP_S],
                    client=pipe,
                )
            replies = await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BusUnavailable(f"presence claim failed: {exc}") from exc
        return [(int(epoch), _parse(old)) for epoch, old in replies]

    async def lookup(self, device_ids: Sequence[str]) -> list[PresenceEntry | None]:
        if not device_ids:
            return []
        try:
            values = await self._redis.mget([presence_key(d) for d in device_ids])
        except (RedisError, OSError) as exc:
            raise BusUnavailable(f"presence lookup failed: {exc}") from exc
        return [_parse(v) for v in values]

    async def refresh(self, shard_id: str, entries: Sequence[tuple[str, int]], ttl_s: int) -> None:
        try:
            for start in range(0, len(entries), self._refresh_batch):
                pipe = self._redis.pipeline(transaction=False)
                for device_id, epoch in entries[start : start + self._refresh_batch]:
                    await self._refresh(
                        keys=[presence_key(device_id), epoch_key(device_id)],
                        args=[f"{epoch}|{shard_id}", ttl_s, EPOCH_KEEP_S],
                        client=pipe,
                    )
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BusUnavailable(f"presence refresh failed: {exc}") from exc

    async def release(self, device_id: str, epoch: int) -> None:
        try:
            await self._release(keys=[presence_key(device_id)], args=[epoch])
        except (RedisError, OSError) as exc:
            raise BusUnavailable(f"presence release failed: {exc}") from exc
