"""Redis bus: sharded pub/sub (SPUBLISH / SSUBSCRIBE) with per-tick coalescing.

Why this shape (shared/LIBRARIES.md section 4):
- one ``await publish`` per message tops out near 4k msgs/s, a pipeline of
  100 near 27k, so ``publish`` only queues and a single sender task ships
  everything queued meanwhile in one ``pipeline(transaction=False)``;
- sharded pub/sub works on standalone Redis 7 and on Redis Cluster alike;
- pub/sub is at-most-once, so a subscription that was (re)established calls
  ``on_resubscribed`` and the shard re-drains from the store.  redis-py
  re-subscribes by itself on reconnect and the server answers with an
  ``ssubscribe`` confirmation: every confirmation we read is exactly one
  (re)subscription, which is what triggers the callback.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from prometheus_client import Counter
from redis.exceptions import RedisError

from gateway.bus.base import MessageHandler, ResubscribedHandler, shard_channel

log = logging.getLogger(__name__)

BUS_PUBLISHED = Counter("pushgw_bus_published_total", "Messages handed to Redis by the bus")
BUS_DROPPED = Counter("pushgw_bus_dropped_total", "Bus messages lost before reaching Redis (store repairs them)")
BUS_RESUBSCRIBED = Counter("pushgw_bus_resubscribed_total", "Shard channel (re)subscriptions")

#: Bound on one pipeline; a bigger backlog goes out in several.
MAX_PIPELINE = 1000
#: Bound on what waits for the sender while Redis is slow or down.
MAX_PENDING = 100_000


def make_client(url: str, *, max_connections: int = 32, pool_timeout_s: float = 5.0) -> aioredis.Redis:
    """Client on a BlockingConnectionPool: a plain pool raises at once when
    exhausted (MaxConnectionsError at ~200 concurrent calls, LIBRARIES.md)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_timeout_s,
        socket_keepalive=True,
        socket_connect_timeout=2.0,
        health_check_interval=30,
    )
    return aioredis.Redis(connection_pool=pool)


class RedisBus:
    def __init__(self, client: aioredis.Redis, *, owns_client: bool = True, subscribe_wait_s: float = 5.0) -> None:
        self._redis = client
        self._owns_client = owns_client
        self._subscribe_wait_s = subscribe_wait_s
        self._pending: list[tuple[str, bytes]] = []
        self._sender: asyncio.Task[None] | None = None
        self._subs: dict[str, asyncio.Task[None]] = {}
        self._callbacks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Pipelines executed so far (tests check coalescing with it).
        self.batches_sent = 0

    @classmethod
    def from_url(cls, url: str) -> RedisBus:
        return cls(make_client(url))

    @property
    def client(self) -> aioredis.Redis:
        return self._redis

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        await self.flush()
        self._closed = True
        for shard_id in list(self._subs):
            await self.unsubscribe(shard_id)
        for task in list(self._callbacks):
            task.cancel()
        await asyncio.gather(*self._callbacks, return_exceptions=True)
        if self._owns_client:
            await self._redis.aclose(close_connection_pool=True)

    # -- publishing -------------------------------------------------------------

    def publish(self, shard_id: str, message: bytes) -> None:
        if self._closed or len(self._pending) >= MAX_PENDING:
            BUS_DROPPED.inc()
            return
        self._pending.append((shard_channel(shard_id), message))
        if self._sender is None or self._sender.done():
            try:
                # The task first runs on the next loop iteration: whatever is
                # published until then rides in the same pipeline.
                self._sender = asyncio.get_running_loop().create_task(self._send_loop())
            except RuntimeError:
                BUS_DROPPED.inc(len(self._pending))
                self._pending.clear()

    async def _send_loop(self) -> None:
        while self._pending:
            batch = self._pending[:MAX_PIPELINE]
            del self._pending[:MAX_PIPELINE]
            try:
                pipe = self._redis.pipeline(transaction=False)
                for channel, message in batch:
                    pipe.spublish(channel, message)
                await pipe.execute()
            except (RedisError, OSError) as exc:
                # A lost doorbell: the rows stay pending and are drained later.
                BUS_DROPPED.inc(len(batch))
                log.warning("bus publish of %d messages failed: %s", len(batch), exc)
                continue
            self.batches_sent += 1
            BUS_PUBLISHED.inc(len(batch))

    async def flush(self) -> None:
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    # -- subscribing ------------------------------------------------------------

    async def subscribe(self, shard_id: str, on_message: MessageHandler, on_resubscribed: ResubscribedHandler) -> None:
        """Start the subscriber; returns once the first subscription is
        confirmed (or after ``subscribe_wait_s`` if Redis is down: the loop
        keeps trying and calls ``on_resubscribed`` when it gets through)."""
        if shard_id in self._subs:
            await self.unsubscribe(shard_id)
        first = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._run(shard_id, on_message, on_resubscribed, first))
        self._subs[shard_id] = task
        try:
            await asyncio.wait_for(first.wait(), self._subscribe_wait_s)
        except TimeoutError:
            log.warning("shard %s: subscription not confirmed yet; still trying", shard_id)

    async def unsubscribe(self, shard_id: str) -> None:
        task = self._subs.pop(shard_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(
        self, shard_id: str, on_message: MessageHandler, on_resubscribed: ResubscribedHandler, first: asyncio.Event
    ) -> None:
        channel = shard_channel(shard_id).encode()
        pubsub = self._redis.pubsub()
        backoff = 0.1
        subscribed = False
        try:
            while True:
                try:
                    if not subscribed:
                        await pubsub.ssubscribe(channel)
                        subscribed = True
                    msg: dict[str, Any] | None = await pubsub.get_message(timeout=1.0)
                    backoff = 0.1
                except (RedisError, OSError) as exc:
                    log.warning("shard %s: subscriber lost Redis (%s); retrying in %.1fs", shard_id, exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)  # short cap: pushes wait for the resubscribe drain
                    continue
                if msg is None:
                    continue
                kind = msg["type"]
                if kind == "smessage":
                    try:
                        on_message(msg["data"])
                    except Exception:
                        log.exception("shard %s: message handler failed", shard_id)
                elif kind == "ssubscribe":
                    # First subscription or redis-py's automatic re-subscribe
                    # after a reconnect: anything published meanwhile is lost.
                    BUS_RESUBSCRIBED.inc()
                    first.set()
                    self._spawn_callback(on_resubscribed, shard_id)
        finally:
            try:
                await pubsub.aclose()
            except (RedisError, OSError):
                pass

    def _spawn_callback(self, callback: ResubscribedHandler, shard_id: str) -> None:
        # A re-drain can take a while; messages must keep flowing meanwhile.
        task = asyncio.get_running_loop().create_task(_run_callback(callback, shard_id))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)


async def _run_callback(callback: ResubscribedHandler, shard_id: str) -> None:
    try:
        await callback()
    except Exception:
        log.exception("shard %s: on_resubscribed failed", shard_id)
