"""In-process bus and presence for the embedded deployment (one process).

They keep the same observable behaviour as the Redis backends so one
contract suite covers both: ``publish`` is synchronous and never raises,
messages of one loop tick are handed over as one batch (on the next loop
iteration, never re-entrantly from inside ``publish``), epochs strictly
increase per device, and presence entries expire after their TTL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from gateway.bus.base import MessageHandler, PresenceEntry, ResubscribedHandler

log = logging.getLogger(__name__)


class LocalBus:
    """Shard channels as dict entries; delivery on the next loop iteration."""

    def __init__(self) -> None:
        self._handlers: dict[str, MessageHandler] = {}
        self._pending: list[tuple[str, bytes]] = []
        self._sender: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        #: Batches handed over so far (the in-process analogue of Redis pipelines).
        self.batches_sent = 0

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        await self.flush()
        self._closed = True
        self._handlers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def publish(self, shard_id: str, message: bytes) -> None:
        if self._closed:
            return
        self._pending.append((shard_id, message))
        if self._sender is None or self._sender.done():
            try:
                self._sender = asyncio.get_running_loop().create_task(self._send_loop())
            except RuntimeError:  # no running loop: nobody could receive it anyway
                self._pending.clear()

    async def _send_loop(self) -> None:
        # The task starts on the next loop iteration, so everything published
        # in the current tick is already queued: one batch.
        while self._pending:
            batch, self._pending = self._pending, []
            self.batches_sent += 1
            for shard_id, message in batch:
                handler = self._handlers.get(shard_id)
                if handler is None:
                    continue  # like Redis: a channel without subscriber drops it
                try:
                    handler(message)
                except Exception:
                    log.exception("bus handler failed on shard %s", shard_id)
            await asyncio.sleep(0)

    async def flush(self) -> None:
        while self._sender is not None and not self._sender.done():
            await asyncio.shield(self._sender)

    async def subscribe(self, shard_id: str, on_message: MessageHandler, on_resubscribed: ResubscribedHandler) -> None:
        self._handlers[shard_id] = on_message
        # Same contract as Redis: the callback runs after the (first) subscription.
        task = asyncio.get_running_loop().create_task(_run_callback(on_resubscribed, shard_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def unsubscribe(self, shard_id: str) -> None:
        self._handlers.pop(shard_id, None)


async def _run_callback(callback: ResubscribedHandler, shard_id: str) -> None:
    try:
        await callback()
    except Exception:
        log.exception("on_resubscribed failed on shard %s", shard_id)


class LocalPresence:
    """device -> (shard, epoch, deadline), with lazy expiry."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, tuple[PresenceEntry, float]] = {}
        self._epochs: dict[str, int] = {}

    def _get(self, device_id: str) -> PresenceEntry | None:
        item = self._entries.get(device_id)
        if item is None:
            return None
        entry, deadline = item
        if deadline <= self._clock():
            del self._entries[device_id]
            return None
        return entry

    async def claim(self, device_id: str, shard_id: str, ttl_s: int) -> tuple[int, PresenceEntry | None]:
        # Epoch counters are kept for the process lifetime so they never go
        # backwards while an older connection may still be alive.
        epoch = self._epochs.get(device_id, 0) + 1
        self._epochs[device_id] = epoch
        old = self._get(device_id)
        self._entries[device_id] = (PresenceEntry(shard_id, epoch), self._clock() + ttl_s)
        return epoch, old

    async def claim_many(
        self, device_ids: Sequence[str], shard_id: str, ttl_s: int
    ) -> list[tuple[int, PresenceEntry | None]]:
        return [await self.claim(d, shard_id, ttl_s) for d in device_ids]

    async def lookup(self, device_ids: Sequence[str]) -> list[PresenceEntry | None]:
        return [self._get(d) for d in device_ids]

    async def refresh(self, shard_id: str, entries: Sequence[tuple[str, int]], ttl_s: int) -> None:
        deadline = self._clock() + ttl_s
        for device_id, epoch in entries:
            entry = self._get(device_id)
            if entry is not None and entry.epoch == epoch and entry.shard_id == shard_id:
                self._entries[device_id] = (entry, deadline)

    async def release(self, device_id: str, epoch: int) -> None:
        entry = self._get(device_id)
        if entry is not None and entry.epoch == epoch:
            del self._entries[device_id]

    async def close(self) -> None:
        self._entries.clear()
