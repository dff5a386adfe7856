"""Group commit: many concurrent ``accept()`` callers, one transaction per batch.

Callers append to a queue and await a future; a background flusher takes
up to ``max_batch`` queued notifications, hands them to the backend's
``accept_many`` (one transaction) and resolves every caller's future only
after that transaction committed.  While a batch is being written the next
one accumulates, so batches grow with load and commits stay few.

There are ``flushers`` lanes, each with its own queue and flusher task (on
its own connection), so one batch's fsync overlaps the next batch's
inserts; PostgreSQL also flushes the WAL of concurrent commits together.
A notification's lane is chosen by its device (or, without one, its
token): one device's rows are always written by one flusher, one batch
after the other, so a device's ids still follow commit order inside a
process and a drain paging by (priority, id) cannot skip a row that an
earlier batch was still writing.

Also here: the backend-independent parts of planning a batch (duplicates
inside one batch, effective expiry) and of reading a status back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from gateway.store.base import App, Device, DeviceToken, ProviderKey, WebhookJob
from schemas.notification import (
    AcceptResult,
    Environment,
    Notification,
    NotificationStatus,
    Status,
    StoredNotification,
    TimelineEvent,
    TokenKind,
)

#: ``apns-expiration: 0`` means one attempt.  The row stays pending for this
#: short grace so the attempt (route or drain) and its ack can land; the
#: engine discards it at once when the device is absent.
ZERO_EXPIRATION_GRACE_S = 30

FlushFn = Callable[[Sequence[Notification]], Awaitable[list[AcceptResult]]]
_Entry = tuple[Notification, "asyncio.Future[AcceptResult]"]


class _Lane:
    """One queue and its flusher task."""

    __slots__ = ("queue", "task", "wakeup")

    def __init__(self) -> None:
        self.queue: list[_Entry] = []
        self.wakeup = asyncio.Event()
        self.task: asyncio.Task[None] | None = None


class GroupCommitter:
    def __init__(self, flush: FlushFn, max_batch: int, flushers: int = 1) -> None:
        if max_batch <= 0:
            raise ValueError("max_batch must be positive")
        if flushers <= 0:
            raise ValueError("flushers must be positive")
        self._flush = flush
        self._max_batch = max_batch
        self._lanes: list[_Lane] | None = None  # made on first use: asyncio.Event wants a running loop
        self._flushers = flushers
        self._closed = False
        #: batches written (one transaction each); tests assert batching with it.
        self.transactions = 0
        self.accepted = 0

    async def submit(self, notification: Notification) -> AcceptResult:
        return await self._enqueue(notification, asyncio.get_running_loop())

    async def submit_many(self, notifications: Sequence[Notification]) -> list[AcceptResult]:
        """Queue a caller's batch like single accepts (it may share transactions with
        other callers and is split by device over the lanes); the results in order."""
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*[self._enqueue(n, loop) for n in notifications], return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r
        return results  # type: ignore[return-value]  # no exceptions left

    def _enqueue(self, notification: Notification, loop: asyncio.AbstractEventLoop) -> asyncio.Future[AcceptResult]:
        if self._closed:
            raise RuntimeError("group committer is closed")
        lanes = self._lanes
        if lanes is None:
            lanes = self._lanes = [_Lane() for _ in range(self._flushers)]
        lane = lanes[hash(notification.device_id or notification.token) % len(lanes)] if len(lanes) > 1 else lanes[0]
        fut: asyncio.Future[AcceptResult] = loop.create_future()
        lane.queue.append((notification, fut))
        if lane.task is None or lane.task.done():
            lane.task = asyncio.create_task(self._run(lane), name="store-group-commit")
        else:
            lane.wakeup.set()
        return fut

    async def _run(self, lane: _Lane) -> None:
        queue = lane.queue
        while not self._closed or queue:
            if not queue:
                lane.wakeup.clear()
                await lane.wakeup.wait()
                continue
            batch = queue[: self._max_batch]
            del queue[: self._max_batch]
            try:
                results = await self._flush([n for n, _ in batch])
            except asyncio.CancelledError:
                for _, fut in batch:
                    if not fut.done():
                        fut.cancel()
                raise
            except BaseException as exc:  # every caller learns the batch failed; nothing committed
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.transactions += 1
            self.accepted += len(batch)
            for (_, fut), result in zip(batch, results, strict=True):
                if not fut.done():
                    fut.set_result(result)

    async def close(self) -> None:
        """Finish what is queued, then stop the flushers."""
        self._closed = True
        tasks = []
        for lane in self._lanes or ():
            lane.wakeup.set()
            if lane.task is not None:
                tasks.append(lane.task)
                lane.task = None
        await asyncio.gather(*tasks, return_exceptions=True)


def expires_at_s(notification: Notification, accepted_at_ms: int, retention_s: int) -> int:
    """Effective end of life: the header, the retention, or the one-attempt grace."""
    accepted_s = accepted_at_ms // 1000
    if notification.expiration is None:
        return accepted_s + retention_s
    if notification.expiration == 0:
        return accepted_s + ZERO_EXPIRATION_GRACE_S
    return notification.expiration


def unique_in_batch(notifications: Sequence[Notification]) -> tuple[Sequence[Notification], list[int] | None]:
    """Drop repeats of (app_id, apns_id) inside one batch.

    Returns the unique notifications and, per input position, the index of
    its first occurrence in that unique list; ``None`` instead when there
    were no repeats (the common case: the results need no spreading).
    """
    if len({(n.app_id, n.apns_id) for n in notifications}) == len(notifications):
        return notifications, None
    first: dict[tuple[int, str], int] = {}
    unique: list[Notification] = []
    where: list[int] = []
    for n in notifications:
        key = (n.app_id, n.apns_id)
        idx = first.get(key)
        if idx is None:
            idx = first[key] = len(unique)
            unique.append(n)
        where.append(idx)
    return unique, where


def spread_results(unique_results: Sequence[AcceptResult], where: Sequence[int]) -> list[AcceptResult]:
    """Map results of the unique rows back to every input; repeats are duplicates."""
    seen: set[int] = set()
    out: list[AcceptResult] = []
    for idx in where:
        res = unique_results[idx]
        if idx in seen:
            res = AcceptResult(apns_id=res.apns_id, id=res.id, duplicate=True, status=res.status)
        seen.add(idx)
        out.append(res)
    return out


_TERMINAL_EVENT = {
    Status.DELIVERED: "acked",
    Status.EXPIRED: "expired",
    Status.COLLAPSED: "collapsed",
    Status.DROPPED: "dropped",
    Status.DISCARDED: "discarded",
    Status.RELAYED: "relayed",
    Status.REJECTED: "rejected",
    Status.DIGESTED: "digested",
    Status.SUPERSEDED: "superseded",
    Status.STALE: "stale",
    Status.ACTIVITY_ENDED: "activity_ended",
}


def timeline(
    status: Status, accepted_at_ms: int, sent_at_ms: int | None, done_at_ms: int | None
) -> list[TimelineEvent]:
    events = [TimelineEvent("accepted", accepted_at_ms)]
    if sent_at_ms is not None:
        events.append(TimelineEvent("sent", sent_at_ms))
    # Every terminal status has its event (tests/unit/test_group_commit.py checks
    # the map is complete): a status read back must never fail on a lookup.
    if status.terminal and done_at_ms is not None:
        events.append(TimelineEvent(_TERMINAL_EVENT[status], done_at_ms))
    return events


# -- rows read back (asyncpg Records and sqlite3.Rows both index by name) -----


def to_stored(row: Any) -> StoredNotification:
    return StoredNotification(
        id=row["id"],
        apns_id=row["apns_id"],
        app_id=row["app_id"],
        token=row["token"],
        topic=row["topic"],
        payload=bytes(row["payload"]),
        priority=row["priority"],
        push_type=row["push_type"],
        expiration=row["expiration"],
        collapse_id=row["collapse_id"],
        device_id=row["device_id"],
        kind=TokenKind(row["kind"]),
        status=Status(row["status"]),
        accepted_at_ms=row["accepted_at_ms"],
    )


def to_token(row: Any) -> DeviceToken:
    return DeviceToken(
        token=row["token"],
        app_id=row["app_id"],
        device_id=row["device_id"],
        topic=row["topic"],
        environment=Environment(row["environment"]),
        kind=TokenKind(row["kind"]),
        active=bool(row["active"]),
        invalidated_at_ms=row["invalidated_at_ms"],
        user_id=row["user_id"],
    )


def to_status(row: Any) -> NotificationStatus:
    status = Status(row["status"])
    return NotificationStatus(
        apns_id=row["apns_id"],
        app_id=row["app_id"],
        token=row["token"],
        topic=row["topic"],
        priority=row["priority"],
        status=status,
        reason=row["reason"],
        timeline=timeline(status, row["accepted_at_ms"], row["sent_at_ms"], row["done_at_ms"]),
    )


def to_webhook_job(row: Any) -> WebhookJob:
    return WebhookJob(
        id=row["id"],
        app_id=row["app_id"],
        body=bytes(row["body"]),
        state=row["state"],
        attempts=row["attempts"],
        next_attempt_ms=row["next_attempt_ms"],
        last_error=row["last_error"],
        created_at_ms=row["created_at_ms"],
    )


def to_app(row: Any) -> App:
    return App(app_id=row["app_id"], team_id=row["team_id"], bundle_id=row["bundle_id"], name=row["name"])


def to_provider_key(row: Any) -> ProviderKey:
    return ProviderKey(
        key_id=row["key_id"], team_id=row["team_id"], public_key_pem=row["public_key_pem"], revoked=bool(row["revoked"])
    )


def to_device(row: Any) -> Device:
    return Device(
        device_id=row["device_id"], app_id=row["app_id"], user_id=row["user_id"], created_at_ms=row["created_at_ms"]
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000
