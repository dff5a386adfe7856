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

Store reads are the expensive part (a pool acquire, the query, the pool's
reset on release), so:

* misses are read in batches: a token that must be read joins a queue, and
  a reader task takes everything queued (up to ``max_batch`` tokens) into one
  ``Store.get_tokens`` query.  A reader starts on the next loop iteration,
  so the misses of every request handled in one iteration share a query,
  and while readers are busy the queue grows, as a group commit does;
* concurrent misses of one token share one read (single flight);
* at most ``max_concurrent_reads`` queries run at once, so a burst of misses
  never drains the store's connection pool and the group commit keeps
  getting a connection;
* a token used in the last quarter of its cache life is re-read in the
  background (refresh ahead), so a steadily used token never makes a request
  wait for the store.  A cached answer is still never served more than
  ``cache_ttl_s`` after it was read;
* ``lookup_many`` resolves a batch's distinct tokens (one query for a REST
  batch of 500), and ``check`` applies the rules to a record already read;
* ``resolve_cached`` answers a hit synchronously, so the HTTP/2 hot path
  does not build a chain of coroutines for a dict lookup.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

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


def check(
    app: App, record: DeviceToken | None, topic: str, push_type: str, environment: Environment | None
) -> DeviceToken:
    """The APNs answer for a token record already read (``None``: unknown token)."""
    if record is None:
        raise BadDeviceToken("unknown device token")
    if environment is not None and record.environment is not environment:
        raise BadDeviceToken("device token is for the other environment")
    if record.app_id != app.app_id or not topic_matches(record.topic, topic, push_type):
        raise DeviceTokenNotForTopic()
    if not record.active:
        raise Unregistered(timestamp_ms=record.invalidated_at_ms or 0)
    return record


_Pending = tuple[str, "asyncio.Future[DeviceToken | None]"]


class TokenResolver:
    def __init__(
        self,
        store: Store,
        cache_ttl_s: float = 5.0,
        *,
        max_entries: int = 100_000,
        max_concurrent_reads: int = 4,
        max_batch: int = 500,
        refresh_ahead: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._ttl = cache_ttl_s
        self._max = max_entries
        self._clock = clock
        self._cache: OrderedDict[str, tuple[DeviceToken, float]] = OrderedDict()
        self._max_readers = max_concurrent_reads
        self._max_batch = max_batch
        self._inflight: dict[str, asyncio.Future[DeviceToken | None]] = {}  # queued or being read
        self._queue: list[_Pending] = []  # not yet taken by a reader
        self._readers = 0  # reader tasks alive
        self._starting = False  # a reader was created and has not taken its batch yet
        # Refresh a hit whose remaining life is below this many seconds.
        self._refresh_below = cache_ttl_s * refresh_ahead
        self._tasks: set[asyncio.Task[None]] = set()
        self._generation = 0  # bumped by invalidate/clear: a read begun before must not be cached
        #: queries made (tests check batching with it)
        self.queries = 0

    def invalidate(self, token: str) -> None:
        token = token.lower()
        self._cache.pop(token, None)
        fut = self._inflight.pop(token, None)
        if fut is not None:
            self._generation += 1

    def clear(self) -> None:
        self._cache.clear()
        self._inflight.clear()
        self._generation += 1

    def _cached(self, token: str, now: float) -> DeviceToken | None:
        hit = self._cache.get(token)
        if hit is None:
            return None
        if hit[1] <= now:
            del self._cache[token]
            return None
        if hit[1] - now < self._refresh_below and token not in self._inflight and len(self._queue) < self._max_batch:
            self._read(token)  # refresh ahead; the entry stays usable meanwhile
        return hit[0]

    def _read(self, token: str) -> asyncio.Future[DeviceToken | None]:
        """Queue one read of ``token``, or join the one already queued or running."""
        fut = self._inflight.get(token)
        if fut is None:
            loop = asyncio.get_running_loop()
            fut = loop.create_future()
            self._inflight[token] = fut
            self._queue.append((token, fut))
            if not self._starting and self._readers < self._max_readers:
                # Started on the next iteration: the misses of this one join it.
                self._starting = True
                self._readers += 1
                task = loop.create_task(self._reader())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        return fut

    async def _reader(self) -> None:
        """Read queued tokens, a batch per query, until the queue is empty."""
        try:
            while self._queue:
                self._starting = False
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
                await self._fetch(batch)
        finally:
            # The loop ends with an empty queue (nothing awaits between the
            # check and here) unless the task was cancelled, i.e. shut down.
            self._readers -= 1
            self._starting = False

    async def _fetch(self, batch: list[_Pending]) -> None:
        generation = self._generation
        started = self._clock()
        try:
            self.queries += 1
            records = await self._store.get_tokens(list({token for token, _ in batch}))
        except BaseException as exc:
            for token, fut in batch:
                if self._inflight.get(token) is fut:
                    del self._inflight[token]
                if fut.done():
                    continue
                if isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                else:
                    fut.set_exception(exc)
                    fut.exception()  # retrieved: a refresh nobody awaits must not warn
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        cacheable = self._ttl > 0 and generation == self._generation
        for token, fut in batch:
            record = records.get(token)
            if self._inflight.get(token) is fut:
                del self._inflight[token]
                if record is not None and cacheable:
                    # TTL counted from before the read: never served staler than cache_ttl_s.
                    self._cache[token] = (record, started + self._ttl)
                    self._cache.move_to_end(token)
                    if len(self._cache) > self._max:
                        self._cache.popitem(last=False)  # oldest insertion first: bounded memory
            if not fut.done():
                fut.set_result(record)

    async def _record(self, token: str) -> DeviceToken | None:
        hit = self._cached(token, self._clock())
        if hit is not None:
            return hit
        return await asyncio.shield(self._read(token))

    async def lookup_many(self, tokens: Iterable[str]) -> dict[str, DeviceToken | None]:
        """Records of already-normalized tokens, each distinct token read once,
        the misses together (one query per ``max_batch`` tokens)."""
        now = self._clock()
        out: dict[str, DeviceToken | None] = {}
        missing: list[str] = []
        for token in tokens:
            if token in out:
                continue
            hit = self._cached(token, now)
            out[token] = hit
            if hit is None:
                missing.append(token)
        if missing:
            reads = [self._read(t) for t in missing]
            await _all_done(reads)
            out.update((t, f.result()) for t, f in zip(missing, reads, strict=True))
        return out

    def resolve_cached(
        self, app: App, token: str, topic: str, push_type: str, environment: Environment | None = None
    ) -> DeviceToken | None:
        """``resolve`` answered from the cache without a coroutine: the record,
        the APNs error, or None when the token must be read (call ``resolve``)."""
        t = normalize_token(token)
        record = self._cached(t, self._clock())
        if record is None:
            return None
        return check(app, record, topic, push_type, environment)

    async def resolve(
        self, app: App, token: str, topic: str, push_type: str, environment: Environment | None = None
    ) -> DeviceToken:
        """The active token record, or the APNs error for this request.

        ``environment`` is the endpoint's (sandbox or production host); when
        given, a token of the other environment is BadDeviceToken, as at Apple.
        """
        record = await self._record(normalize_token(token))
        return check(app, record, topic, push_type, environment)


async def _all_done(futures: list[asyncio.Future[DeviceToken | None]]) -> None:
    """Wait until every future is done, with one waiter instead of a shield and a
    gather entry per token (a batch of 500 misses made 1,000 helper futures).

    Cancelling the caller cancels only the waiter: the shared reads go on for
    the other requests waiting on them, as ``asyncio.shield`` would ensure."""
    pending = sum(1 for f in futures if not f.done())
    if not pending:
        return
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def one_done(_: asyncio.Future[DeviceToken | None]) -> None:
        nonlocal pending
        pending -= 1
        if not pending and not waiter.done():
            waiter.set_result(None)

    for f in futures:
        if not f.done():
            f.add_done_callback(one_done)
    await waiter
