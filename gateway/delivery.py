"""The delivery engine: commit, then route.

``accept`` returns once the store has committed (DESIGN.md promise 1); a
``StoreUnavailable`` propagates untouched so the API answers 503.  Only new,
committed, local notifications are routed, and routing happens *after* the
commit (promise 3): presence is looked up, and the notification is published
to the shard holding the device (the rows of one routing batch that go to
the same shard ride in one bus message).  A connecting session claims presence
before it reads its backlog, so either this lookup finds the session or the
session's drain finds the row.

Routing runs in a background router task so the provider gets its 200
without waiting for Redis, and so everything committed together (group
commit) is routed together: one MGET for the presence of a whole batch, one
bus pipeline, one ``discard`` call.  Routing failures (Redis down) are only
logged: the row is pending and will be drained on the next (re)connection.

Kind ``apns`` rows are left for the bridge, which claims them from the store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from prometheus_client import Counter

from gateway.bus import messages
from gateway.bus.base import Bus, Presence, PresenceEntry
from gateway.store.base import Store
from schemas.errors import PushgwError, StoreUnavailable
from schemas.notification import AcceptResult, Notification, Status, StoredNotification, TokenKind

log = logging.getLogger(__name__)

ACCEPTED = Counter("pushgw_delivery_accepted_total", "Notifications committed by the delivery engine")
DUPLICATES = Counter("pushgw_delivery_duplicates_total", "Accepts of an apns-id that was already stored")
ROUTED = Counter("pushgw_delivery_routed_total", "Notifications published to the shard of a connected device")
DISCARDED = Counter("pushgw_delivery_discarded_total", "apns-expiration 0 notifications for absent devices")
ROUTE_ERRORS = Counter("pushgw_delivery_route_errors_total", "Routing batches that failed (rows stay pending)")
KICKS = Counter("pushgw_delivery_kicks_total", "Kick messages sent to close an older connection")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


#: Upper bound of one routing batch (one MGET, one pipeline).
ROUTE_BATCH = 2000
#: Bound on rows waiting for the router; beyond it they are left to the drain.
MAX_ROUTE_QUEUE = 200_000
#: After a failed routing batch (Redis away) its devices are rung again this
#: much later, and again, until a lookup and publish go through.
RING_RETRY_S = 1.0
#: Bound on the payload bytes of one bus message: a shard decodes it in one go,
#: so a huge one would stall its loop (APNs payloads are up to 5 KiB each).
BUS_MESSAGE_PAYLOAD_MAX = 256 * 1024


class DeliveryEngine:
    def __init__(
        self,
        store: Store,
        bus: Bus,
        presence: Presence,
        *,
        clock_ms: Callable[[], int] = _now_ms,
    ) -> None:
        self._store = store
        self._bus = bus
        self._presence = presence
        self._clock_ms = clock_ms
        self._queue: list[StoredNotification] = []
        self._rings: set[str] = set()  # devices whose shard should re-drain
        self._router: asyncio.Task[None] | None = None
        self._retry: set[str] = set()  # devices of failed routing batches, rung again soon
        self._retry_timer: asyncio.TimerHandle | None = None
        self._closed = False

    # -- accepting ----------------------------------------------------------------

    async def accept(self, n: Notification) -> AcceptResult:
        try:
            result = await self._store.accept(n)  # StoreUnavailable -> 503 upstream
        except Exception as exc:
            raise _unavailable(exc) from exc
        self._after_commit(n, result)
        return result

    async def accept_many(self, ns: Sequence[Notification]) -> list[AcceptResult]:
        if not ns:
            return []
        try:
            results = await self._store.accept_many(ns)
        except Exception as exc:
            raise _unavailable(exc) from exc
        fresh = 0
        for n, result in zip(ns, results, strict=True):
            fresh += self._after_commit(n, result, count=False)
        ACCEPTED.inc(fresh)  # once per batch: a counter update takes a lock
        return results

    def _after_commit(self, n: Notification, result: AcceptResult, *, count: bool = True) -> bool:
        """Route a committed notification; True if it was new (not a duplicate)."""
        if result.duplicate:
            DUPLICATES.inc()
            # A provider retries after a lost answer: the original may have been
            # committed by a process that died before routing it.  If it is still
            # pending, ring the device's shard to re-drain it from the store (never
            # a second copy: the shard and the SDK dedupe by id).
            if result.status is Status.PENDING and n.kind is TokenKind.LOCAL and n.device_id is not None:
                self.ring_devices([n.device_id])
            return False
        if count:
            ACCEPTED.inc()
        if result.status is not Status.PENDING:
            return True  # settled at once (e.g. dropped by the backlog cap): nothing to deliver
        if n.kind is not TokenKind.LOCAL or n.device_id is None:
            return True  # kind apns: the bridge claims it from the store
        now = self._clock_ms()
        if n.deliver_at_ms is not None and n.deliver_at_ms > now:
            return True  # scheduled: the worker rings the shard when it comes due
        self._enqueue(_stored(n, result, now))
        return True

    def _enqueue(self, sn: StoredNotification) -> None:
        if self._closed or len(self._queue) >= MAX_ROUTE_QUEUE:
            return  # pending in the store: the route repair or the next drain delivers it
        self._queue.append(sn)
        self._wake_router()

    def ring_devices(self, device_ids: Sequence[str]) -> None:
        """Ask the shards holding these devices to re-drain them from the store."""
        if self._closed:
            return
        self._rings.update(device_ids)
        self._wake_router()

    def _wake_router(self) -> None:
        if self._router is None or self._router.done():
            # Started on the next loop iteration: every row committed in this
            # tick (one group commit wakes all its callers at once) joins it.
            self._router = asyncio.get_running_loop().create_task(self._route_loop())

    # -- routing ------------------------------------------------------------------

    async def _route_loop(self) -> None:
        while self._queue or self._rings:
            batch = self._queue[:ROUTE_BATCH]
            del self._queue[:ROUTE_BATCH]
            rings = list(self._rings)[:ROUTE_BATCH]
            self._rings.difference_update(rings)
            try:
                if batch:
                    await self._route(batch)
                if rings:
                    await self._ring(rings)
            except Exception as exc:  # Redis or store trouble: the rows stay pending
                ROUTE_ERRORS.inc()
                log.warning("routing %d notifications failed: %s", len(batch) + len(rings), exc)
                # Ring those devices again shortly: a push accepted while Redis restarts
                # would otherwise wait for the route repair's later sweeps (15 s, 60 s).
                self._retry_later([*rings, *(sn.device_id for sn in batch if sn.device_id is not None)])

    def _retry_later(self, device_ids: list[str]) -> None:
        if self._closed or len(self._retry) >= MAX_ROUTE_QUEUE:
            return  # bounded: beyond it the route repair rings them
        self._retry.update(device_ids)
        if self._retry_timer is None:
            self._retry_timer = asyncio.get_running_loop().call_later(RING_RETRY_S, self._retry_now)

    def _retry_now(self) -> None:
        self._retry_timer = None
        devices, self._retry = self._retry, set()
        self.ring_devices(sorted(devices))

    async def _ring(self, device_ids: list[str]) -> None:
        for device_id, entry in zip(device_ids, await self._presence.lookup(device_ids), strict=True):
            if entry is not None:
                self.ring(entry.shard_id, device_id)

    async def _route(self, batch: list[StoredNotification]) -> None:
        device_ids = list({sn.device_id for sn in batch if sn.device_id is not None})
        where: dict[str, PresenceEntry | None] = dict(
            zip(device_ids, await self._presence.lookup(device_ids), strict=True)
        )
        routed_at = self._clock_ms()
        discard: list[int] = []
        per_shard: dict[str, list[StoredNotification]] = {}
        for sn in batch:
            entry = where.get(sn.device_id) if sn.device_id is not None else None
            if entry is not None:
                per_shard.setdefault(entry.shard_id, []).append(sn)
            elif sn.expiration == 0:
                discard.append(sn.id)
        routed = 0
        for shard_id, rows in per_shard.items():
            for part in _bus_parts(rows):
                self._bus.publish(shard_id, messages.encode(messages.PushBatchMessage(part, routed_at)))
            routed += len(rows)
        ROUTED.inc(routed)
        if discard:
            # Counted before the call: if the store fails, the sweeper expires them.
            await self._store.discard(discard)
            DISCARDED.inc(len(discard))

    async def flush(self) -> None:
        """Wait until every committed notification so far was routed and its
        bus message handed to the transport (tests, graceful shutdown)."""
        while self._router is not None and not self._router.done():
            await asyncio.shield(self._router)
        await self._bus.flush()

    async def close(self) -> None:
        await self.flush()
        self._closed = True
        if self._retry_timer is not None:
            self._retry_timer.cancel()
            self._retry_timer = None

    # -- ghosting -----------------------------------------------------------------

    async def kick(self, device_id: str, replaced_entry: PresenceEntry, new_epoch: int | None = None) -> None:
        """Tell the shard of the replaced connection to close it.

        The kick closes connections older than ``new_epoch``; epochs strictly
        increase, so ``replaced_entry.epoch + 1`` is a safe default.
        """
        epoch = new_epoch if new_epoch is not None else replaced_entry.epoch + 1
        self._bus.publish(replaced_entry.shard_id, messages.encode(messages.KickMessage(device_id, epoch)))
        KICKS.inc()

    def ring(self, shard_id: str, device_id: str) -> None:
        """Ask a shard to re-drain one device (scheduled pushes came due)."""
        self._bus.publish(shard_id, messages.encode(messages.DrainMessage(device_id)))


def _bus_parts(rows: list[StoredNotification]) -> list[list[StoredNotification]]:
    """Split one shard's rows into bus messages of bounded payload size."""
    parts: list[list[StoredNotification]] = [[]]
    size = 0
    for sn in rows:
        if parts[-1] and size + len(sn.payload) > BUS_MESSAGE_PAYLOAD_MAX:
            parts.append([])
            size = 0
        parts[-1].append(sn)
        size += len(sn.payload)
    return parts


def _unavailable(exc: Exception) -> PushgwError:
    """Promise 1 at the boundary the APIs call: a failed accept is a 503.

    Stores translate their driver errors themselves; anything else that
    escapes (a driver state error while the server goes away, a closed
    store) still means "nothing (known to be) accepted", and the provider's
    retry with the same apns-id is deduplicated, so it maps to
    StoreUnavailable too, logged loudly because the store should have said so.
    """
    if isinstance(exc, PushgwError):
        return exc
    log.error("store.accept raised %s instead of StoreUnavailable: %s", type(exc).__name__, exc)
    return StoreUnavailable(f"store failed: {type(exc).__name__}")


def _stored(n: Notification, result: AcceptResult, now_ms: int) -> StoredNotification:
    """The row as the store holds it, rebuilt without a read-back."""
    return StoredNotification(
        id=result.id,
        apns_id=n.apns_id,
        app_id=n.app_id,
        token=n.token,
        topic=n.topic,
        payload=n.payload,
        priority=n.priority,
        push_type=n.push_type,
        expiration=n.expiration,
        collapse_id=n.collapse_id,
        device_id=n.device_id,
        kind=n.kind,
        status=Status.PENDING,
        accepted_at_ms=now_ms,
    )
