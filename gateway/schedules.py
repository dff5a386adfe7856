"""Recurring schedules: slot arithmetic and the worker that fires them.

A schedule has slots: ``start + k * every_s`` or the times its cron
expression matches.  ``next_slot_ms`` in the store is the first slot not yet
fired or skipped.  Each worker tick (``ScheduleRunner``) takes the due
schedules and for each:

1. finds the due slots (``next_slot_ms`` .. now) and applies the missed-slot
   policy: only the latest due slot fires, and only if it is at most
   ``catch_up_s`` old; earlier ones (a worker that was down, a long pause of
   the process) are counted in ``skipped``.  On time, exactly one slot is due.
2. commits the slot's pushes through the delivery engine.  Their apns-ids are
   ``uuid5(schedule_id, slot, token)``, so the store's (app, apns-id)
   idempotency makes firing one slot twice harmless: after a crash between
   steps 2 and 3, or two workers racing, nothing is stored or delivered twice.
3. advances ``next_slot_ms`` with a compare-and-set on the old value.

Payloads rotate: slot number k uses ``payloads[k % len(payloads)]``.  For
Live Activity schedules ``aps.timestamp`` is set to the slot time, so each
update is newer than the last one the device saw.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from prometheus_client import Counter

from gateway.authorize import topic_matches
from gateway.schedules_cron import Cron
from gateway.store.base import App, DeviceToken
from gateway.store.schedules_store import Schedule
from gateway.workers import _Periodic
from schemas.errors import ServiceUnavailable
from schemas.notification import Notification
from schemas.push_types import TOPIC_SUFFIX

log = logging.getLogger("pushgw.schedules")

FIRED = Counter("pushgw_schedule_slots_fired_total", "Schedule slots fired")
SKIPPED = Counter("pushgw_schedule_slots_skipped_total", "Schedule slots skipped by the missed-slot policy")

#: Namespace of the apns-ids a schedule's pushes get (uuid5 of schedule, slot, token).
SCHEDULE_NS = uuid.UUID("7f0e4c1e-5b0a-4d52-9a55-2f1f6b0c8d31")
#: Tokens read and accepted per transaction when a channel schedule fans out.
FANOUT_PAGE = 1000
#: Cron slots walked one by one after downtime before jumping to now.
_MAX_WALK = 10_000


def slot_apns_id(schedule_id: str, slot_ms: int, token: str) -> str:
    return str(uuid.uuid5(SCHEDULE_NS, f"{schedule_id}/{slot_ms}/{token}"))


def first_slot(every_s: int | None, cron: str | None, timezone: str, start_ms: int) -> int:
    """The first slot at or after ``start_ms``."""
    if every_s is not None:
        return start_ms
    assert cron is not None
    return Cron.parse(cron, timezone).next_after(start_ms - 1)


def due_slots(s: Schedule, now_ms: int) -> tuple[int, int, int, int]:
    """(latest due slot, its number, how many slots are due, the next slot after them).

    Only meaningful when ``s.next_slot_ms <= now_ms``.
    """
    if s.every_s is not None:
        step = s.every_s * 1000
        count = (now_ms - s.next_slot_ms) // step + 1
        latest = s.next_slot_ms + (count - 1) * step
        return latest, s.next_index + count - 1, count, latest + step
    assert s.cron is not None
    cron = Cron.parse(s.cron, s.timezone)
    latest, count, nxt = s.next_slot_ms, 1, cron.next_after(s.next_slot_ms)
    while nxt <= now_ms and count < _MAX_WALK:
        latest, count, nxt = nxt, count + 1, cron.next_after(nxt)
    if nxt <= now_ms:  # years of downtime on a per-minute schedule: count is a lower bound
        latest, nxt = now_ms - now_ms % 60_000, cron.next_after(now_ms)
    return latest, s.next_index + count - 1, count, nxt


def resume_slot(s: Schedule, now_ms: int) -> tuple[int, int]:
    """(next slot, its number) for a schedule resumed at ``now_ms``: the first
    slot from now on; those that fell while it was paused are not caught up."""
    if s.next_slot_ms >= now_ms:
        return s.next_slot_ms, s.next_index
    _, index, _, nxt = due_slots(s, now_ms)
    return nxt, index + 1


def slot_payload(s: Schedule, index: int, slot_ms: int) -> bytes:
    payloads = msgspec.json.decode(s.payloads, type=list[msgspec.Raw])
    return stamp_slot(s.push_type, bytes(payloads[index % len(payloads)]), slot_ms)


def stamp_slot(push_type: str, raw: bytes, slot_ms: int) -> bytes:
    """The payload as a slot sends it: a Live Activity update carries the slot time."""
    if push_type != "liveactivity":
        return raw
    doc = msgspec.json.decode(raw)
    doc.setdefault("aps", {})["timestamp"] = slot_ms // 1000
    return msgspec.json.encode(doc)


def _topic(s: Schedule, rec: DeviceToken) -> str:
    if s.topic is not None:
        return s.topic
    suffix = TOPIC_SUFFIX.get(s.push_type, "")
    return rec.topic if not suffix or rec.topic.endswith(suffix) else rec.topic + suffix


class ScheduleRunner(_Periodic):
    """Fires due schedules every ``interval_s`` (see the module doc)."""

    name = "schedules"

    def __init__(
        self, store: Any, engine: Any, *, interval_s: float = 1.0, catch_up_s: int = 300, batch: int = 100
    ) -> None:
        self.store = store
        self.engine = engine
        self.interval_s = interval_s
        self.catch_up_ms = catch_up_s * 1000
        self.batch = batch

    async def tick(self) -> None:
        await self.run_once()

    async def run_once(self, now_ms: int | None = None) -> int:
        """Fire every due schedule once; returns the number of slots fired."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        fired = 0
        seen: set[str] = set()
        while True:  # page through everything due now, so a busy tick does not delay the rest a tick
            due = [s for s in await self.store.due_schedules(now_ms, self.batch) if s.schedule_id not in seen]
            for s in due:
                seen.add(s.schedule_id)
                try:
                    fired += await self.fire(s, now_ms)
                except ServiceUnavailable:
                    raise  # the store is down: the loop retries on the next tick
                except Exception:  # one broken schedule must not starve the others
                    log.exception("schedule %s failed", s.schedule_id)
            if not due:
                return fired

    async def fire(self, s: Schedule, now_ms: int) -> int:
        latest, index, count, nxt = due_slots(s, now_ms)
        on_time = now_ms - latest <= self.catch_up_ms
        error = None
        if on_time:
            error = await self._send_slot(s, latest, index)
        skipped = count - 1 if on_time else count
        advanced = await self.store.advance_schedule(
            s.schedule_id, s.next_slot_ms, nxt, index + 1,
            fired_slot_ms=latest if on_time else None, fired=int(on_time), skipped=skipped, error=error,
        )  # fmt: skip
        if not advanced:
            return 0  # another worker moved it (its pushes had the same ids)
        FIRED.inc(int(on_time))
        SKIPPED.inc(skipped)
        return int(on_time)

    async def _send_slot(self, s: Schedule, slot_ms: int, index: int) -> str | None:
        """Commit the slot's pushes; returns an error text for the schedule, or None."""
        app = await self.store.get_app(s.app_id)
        if app is None:
            return "app no longer exists"
        payload = slot_payload(s, index, slot_ms)
        if s.target_kind == "token":
            rec = await self.store.get_token(s.target)
            problem = _unusable(app, s, rec)
            if problem is not None:
                return problem
            assert rec is not None
            await self.engine.accept_many([self._notification(s, rec, slot_ms, payload)])
            return None
        after = ""
        while True:
            page: Sequence[DeviceToken] = await self.store.channel_tokens(
                s.app_id, s.target, after=after, limit=FANOUT_PAGE
            )
            ready = [self._notification(s, r, slot_ms, payload) for r in page if _unusable(app, s, r) is None]
            if ready:
                await self.engine.accept_many(ready)
            if len(page) < FANOUT_PAGE:
                return None
            after = page[-1].token

    def _notification(self, s: Schedule, rec: DeviceToken, slot_ms: int, payload: bytes) -> Notification:
        return Notification(
            apns_id=slot_apns_id(s.schedule_id, slot_ms, rec.token),
            app_id=s.app_id,
            token=rec.token,
            topic=_topic(s, rec),
            payload=payload,
            priority=s.priority,
            push_type=s.push_type,
            expiration=(slot_ms // 1000 + s.ttl_s) if s.ttl_s else None,
            collapse_id=s.collapse_id,
            device_id=rec.device_id,
            kind=rec.kind,
        )


def _unusable(app: App, s: Schedule, rec: DeviceToken | None) -> str | None:
    if rec is None or rec.app_id != app.app_id:
        return "BadDeviceToken"
    if not rec.active:
        return "Unregistered"
    if not topic_matches(rec.topic, _topic(s, rec), s.push_type):
        return "DeviceTokenNotForTopic"
    return None
