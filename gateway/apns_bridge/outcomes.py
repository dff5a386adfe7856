"""Relay outcomes written to the store in batches (group commit for answers).

One store round trip per answer capped the bridge at ~200 notifications/s:
thousands of streams finish per second and the store pool has a handful of
connections.  Every relay task hands its outcome here and waits until the
batch holding it is written, so a task that returns has its row finished or
rescheduled in the store (the in-flight window stays bounded, and
``BridgeSender.stop`` loses nothing).  One writer runs at a time: while it
writes, the next batch fills up, so batches grow with load by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from gateway.store.base import RelayOutcome, Store
from schemas.errors import StoreUnavailable

log = logging.getLogger("pushgw.bridge")


class OutcomeBatcher:
    def __init__(self, store: Store, *, write_attempts: int = 3, retry_pause_s: float = 0.5) -> None:
        self.store = store
        self._write_attempts = write_attempts
        self._retry_pause_s = retry_pause_s
        self._finishes: list[RelayOutcome] = []
        self._retries: list[tuple[int, int]] = []
        self._done: asyncio.Future[None] | None = None  # resolved when the current batch is written
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # written batches (tests, metrics)

    async def finish(self, outcome: RelayOutcome) -> None:
        """``relayed``/``rejected``: returns once it is in the store."""
        await self._add(self._finishes, outcome)

    async def retry(self, row_id: int, not_before_ms: int) -> None:
        """Back to pending, claimable from ``not_before_ms``: returns once it is in the store."""
        await self._add(self._retries, (row_id, not_before_ms))

    async def _add(self, into: list[Any], item: object) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
        into.append(item)
        done = self._done
        self._wake.set()
        await asyncio.shield(done)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0)  # let the tasks answered in this loop iteration join the batch
            finishes, self._finishes = self._finishes, []
            retries, self._retries = self._retries, []
            done, self._done = self._done, None
            if done is None:
                continue
            try:
                await self._write(finishes, retries)
            except Exception as exc:
                if not done.done():
                    done.set_exception(exc)
                    done.exception()  # retrieved: waiters that were cancelled must not warn
            else:
                if not done.done():
                    done.set_result(None)

    async def _write(self, finishes: list[RelayOutcome], retries: list[tuple[int, int]]) -> None:
        for attempt in range(1, self._write_attempts + 1):
            try:
                if finishes:
                    await self.store.finish_relay_many(finishes)
                    finishes = []  # written: a retry of the batch must not repeat it
                if retries:
                    await self.store.retry_relay_many(retries)
                self.batches += 1
                return
            except StoreUnavailable:
                if attempt == self._write_attempts:
                    # The leases run out and the rows are claimed (and sent) again.
                    raise
                log.warning("bridge: store unavailable writing %d outcomes; retrying", len(finishes) + len(retries))
                await asyncio.sleep(self._retry_pause_s)

    async def close(self) -> None:
        """Write what is queued, then stop the writer."""
        while self._done is not None and not self._done.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(self._done)
        await self.abort()

    async def abort(self) -> None:
        """Stop without writing (a crash, in tests)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
