"""Coalescing of one-device store and presence calls into batch calls.

A reconnect storm brings thousands of devices to a shard at once, and each
of them used to cost its own round trips (authenticate, claim, first backlog
page).  A round trip costs the shard, PostgreSQL and Redis far more than the
row it carries, so the shard asks for everyone who is waiting at once: a
``Batcher`` collects the requests made while its previous batch calls are
running and answers them all with the next batch call.

With nothing else in flight a request goes out on the next loop iteration
(no added delay when the shard is idle); under load the batches grow with
the latency of the call, which is what keeps the cost per device low.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
R = TypeVar("R")


class Batcher(Generic[K, R]):
    """``await get(key)`` -> the result for ``key`` from ``call(keys)``, which
    answers a list of keys with a list of results in the same order.

    At most ``concurrency`` calls run at once, each with at most ``max_batch``
    keys.  A failing call fails every request of its batch with its exception.
    """

    def __init__(
        self, call: Callable[[list[K]], Awaitable[Sequence[R]]], *, max_batch: int, concurrency: int = 2
    ) -> None:
        self._call = call
        self._max_batch = max_batch
        self._concurrency = concurrency
        self._waiting: list[tuple[K, asyncio.Future[R]]] = []
        self._running = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def get(self, key: K) -> R:
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, fut))
        self._schedule()
        return await fut

    def _schedule(self) -> None:
        if self._scheduled or not self._waiting or self._running >= self._concurrency:
            return
        self._scheduled = True
        # On the next iteration: every request made in this one joins the batch.
        asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        while self._waiting and self._running < self._concurrency:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
            # Requests whose caller went away (a closed socket) are not asked for.
            batch = [(k, f) for k, f in batch if not f.done()]
            if not batch:
                continue
            self._running += 1
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[K, asyncio.Future[R]]]) -> None:
        try:
            results = await self._call([k for k, _ in batch])
        except Exception as exc:
            for _k, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
        else:
            for (_k, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)
        finally:
            self._running -= 1
            self._schedule()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for _k, fut in self._waiting:
            fut.cancel()
        self._waiting.clear()
