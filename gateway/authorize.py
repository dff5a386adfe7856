"""Token authorization: may this app push to this token on this topic?

Raises exactly what APNs answers (shared/APNS.md section 4):
- malformed or unknown token, or a token of the other environment -> 400 BadDeviceToken
- token of another app, or topic not the token's (with the push type's suffix)
  -> 400 DeviceTokenNotForTopic
- inactive token -> 410 Unregistered with the invalidation time in ms

This sits on the hot path of every push, so token records are cached for a
few seconds.  Only positive answers are cached: a token issued a moment ago
must be usable at once, and an unknown token costs one indexed read.  A
token unregistered in *this* process is invalidated at once
(``invalidate``); one unregistered elsewhere is seen within ``cache_ttl_s``.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.store.base import App, DeviceToken, Store
from schemas.errors import BadDeviceToken, DeviceTokenNotForTopic, Unregistered
from schemas.notification import Environment
from schemas.push_types import TOPIC_SUFFIX

#: Apple says not to assume 32 bytes; 100 bytes has been announced.  Anything
#: far beyond that is not a token and must not reach the store.
MAX_TOKEN_HEX = 512

_HEX = frozenset("0123456789abcdef")


def normalize_token(token: str) -> str:
    """Lowercase hex of even length, else BadDeviceToken."""
    t = token.lower()
    if not t or len(t) % 2 or len(t) > MAX_TOKEN_HEX or not _HEX.issuperset(t):
        raise BadDeviceToken("device token is not even-length hex")
    return t


def topic_matches(token_topic: str, topic: str, push_type: str) -> bool:
    """The request topic must be the token's topic, or the token's topic plus
    the suffix the push type requires (``<bundle>.voip`` for voip...)."""
    if topic == token_topic:
        return True
    suffix = TOPIC_SUFFIX.get(push_type, "")
    return bool(suffix) and topic == token_topic + suffix


class TokenResolver:
    def __init__(
        self,
        store: Store,
        cache_ttl_s: float = 5.0,
        *,
        max_entries: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = cache_ttl_s
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[DeviceToken, float]] = OrderedDict()

    def invalidate(self, token: str) -> None:
        self._cache.pop(token.lower(), None)

    def clear(self) -> None:
        self._cache.clear()

    async def _record(self, token: str) -> DeviceToken | None:
        now = self._clock()
        hit = self._cache.get(token)
        if hit is not None:
            if hit[1] > now:
                return hit[0]
            del self._cache[token]
        record = await self._store.get_token(token)
        if record is not None and self._ttl > 0:
            self._cache[token] = (record, now + self._ttl)
            if len(self._cache) > self._max:
                self._cache.popitem(last=False)  # oldest insertion first: bounded memory
        return record

    async def resolve(
        self, app: App, token: str, topic: str, push_type: str, environment: Environment | None = None
    ) -> DeviceToken:
        """The active token record, or the APNs error for this request.

        ``environment`` is the endpoint's (sandbox or production host); when
        given, a token of the other environment is BadDeviceToken, as at Apple.
        """
        record = await self._record(normalize_token(token))
        if record is None:
            raise BadDeviceToken("unknown device token")
        if environment is not None and record.environment is not environment:
            raise BadDeviceToken("device token is for the other environment")
        if record.app_id != app.app_id or not topic_matches(record.topic, topic, push_type):
            raise DeviceTokenNotForTopic()
        if not record.active:
            raise Unregistered(timestamp_ms=record.invalidated_at_ms or 0)
        return record
