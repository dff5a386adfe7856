"""Digest: an app's opt-in rule folds the pushes one token gets within a
window into one summary push.

``DigestGate`` wraps the delivery engine on the provider side.  A push
matches the app's rule when its push type is listed (default ``alert``), its
priority is at most ``max_priority`` and it is not scheduled
(``deliver_at_ms``).  A matching push is committed to ``digest_items``
instead of the notifications table (the provider's 200 still means durable)
and answered with status ``digesting``.  The first item for a token opens a
window of ``window_s``; later items join it.

``DigestWorker`` finds windows that have ended and, for each, commits one
summary notification through the plain engine::

    {"aps": {"alert": {"title": <latest title>, "body": <latest body>}},
     "pushgw_digest": {"count": n, "apns_ids": [...], "window_end_ms": t}}

then marks the items ``digested`` with the summary's apns-id (the status API
shows it as ``summary_apns_id``).

A window whose token is no longer active when it ends (unregistered, its
device deleted, or forgotten after Apple's ``BadDeviceToken``) gets no
summary: a push to that token would be answered ``410 Unregistered`` at
intake, so none is made on the provider's behalf either.  Its items become
``discarded`` with that reason (``drop_digested``); the token's removal is
already in the feedback API.  The summary's apns-id is derived from the
window's first item, so a worker that dies between the two steps re-commits
the same summary on restart (a duplicate, not a second push): nothing is
lost and nothing is sent twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec
from prometheus_client import Counter

from gateway.store.schedules_store import DigestItem, DigestRule
from gateway.workers import _Periodic
from schemas.errors import BadDeviceToken, Unregistered
from schemas.notification import AcceptResult, Notification, Status, TokenKind

log = logging.getLogger("pushgw.digest")

DIGESTED = Counter("pushgw_digest_items_total", "Pushes held by a digest rule")
SUMMARIES = Counter("pushgw_digest_summaries_total", "Summary pushes committed by the digest worker")
DROPPED = Counter("pushgw_digest_windows_dropped_total", "Digest windows closed without a summary (token gone)")

DIGEST_NS = uuid.UUID("0b9d3f4e-8c71-4f0a-b6f2-5d3a1e7c9b24")


def _now_ms() -> int:
    return int(time.time() * 1000)


def matches(rule: DigestRule | None, n: Notification) -> bool:
    return (
        rule is not None
        and n.push_type in rule.push_types
        and n.priority <= rule.max_priority
        and n.deliver_at_ms is None
    )


class DigestGate:
    """The delivery engine as the provider APIs see it, with the digest rule applied.

    Everything but ``accept``/``accept_many`` is the wrapped engine's.  Rules
    are cached per app for ``rule_ttl_s`` (a changed rule applies within it),
    so a push to an app without a rule costs one dict lookup.
    """

    def __init__(self, engine: Any, store: Any, *, rule_ttl_s: float = 5.0) -> None:
        self.inner = engine
        self.store = store
        self.rule_ttl_s = rule_ttl_s
        self._rules: dict[int, tuple[DigestRule | None, float]] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def forget(self, app_id: int) -> None:
        """Drop the cached rule (the REST handler calls it after a change)."""
        self._rules.pop(app_id, None)

    async def rule(self, app_id: int) -> DigestRule | None:
        now = time.monotonic()
        hit = self._rules.get(app_id)
        if hit is not None and hit[1] > now:
            return hit[0]
        rule = await self.store.get_digest_rule(app_id)
        self._rules[app_id] = (rule, now + self.rule_ttl_s)
        return rule

    async def accept(self, n: Notification) -> AcceptResult:
        rule = await self.rule(n.app_id)
        if not matches(rule, n):
            return await self.inner.accept(n)
        assert rule is not None
        return await self._hold(n, rule)

    async def accept_many(self, ns: Sequence[Notification]) -> list[AcceptResult]:
        rules = {app_id: await self.rule(app_id) for app_id in {n.app_id for n in ns}}
        plain = [n for n in ns if not matches(rules[n.app_id], n)]
        done = iter(await self.inner.accept_many(plain) if plain else [])
        out = []
        for n in ns:
            rule = rules[n.app_id]
            out.append(await self._hold(n, rule) if rule is not None and matches(rule, n) else next(done))
        return out

    async def _hold(self, n: Notification, rule: DigestRule) -> AcceptResult:
        item = DigestItem(
            id=0, app_id=n.app_id, apns_id=n.apns_id, token=n.token, topic=n.topic, device_id=n.device_id,
            kind=n.kind.value, priority=n.priority, payload=n.payload, accepted_at_ms=_now_ms(), window_end_ms=0,
            summary_apns_id=None, summarized_at_ms=None,
        )  # fmt: skip
        stored, duplicate = await self.store.add_digest_item(item, rule.window_s * 1000)
        if not duplicate:
            DIGESTED.inc()
        return AcceptResult(apns_id=n.apns_id, id=stored.id, duplicate=duplicate, status=item_status(stored))


def item_status(item: DigestItem) -> Status:
    """What a held push became: waiting, folded into a summary, or dropped with its token."""
    if item.dropped_reason is not None:
        return Status.DISCARDED
    return Status.DIGESTED if item.summary_apns_id else Status.DIGESTING


async def token_gone(store: Any, token: str) -> str | None:
    """The reason a summary must not go to ``token`` now, or None when it may."""
    record = await store.get_token(token)
    if record is None:
        return BadDeviceToken.reason  # forgotten: Apple said it is no token at all
    return None if record.active else Unregistered.reason


def title_and_body(payload: bytes) -> tuple[str | None, str | None]:
    """The alert's title and body (a string alert is the body)."""
    try:
        alert = msgspec.json.decode(payload).get("aps", {}).get("alert")
    except (msgspec.DecodeError, AttributeError):
        return None, None
    if isinstance(alert, str):
        return None, alert
    if isinstance(alert, dict):
        title, body = alert.get("title"), alert.get("body")
        return (title if isinstance(title, str) else None), (body if isinstance(body, str) else None)
    return None, None


def summary_for(items: Sequence[DigestItem]) -> Notification:
    """The one push that stands for ``items`` (one token's window, by id)."""
    first, latest = items[0], items[-1]
    title, body = title_and_body(latest.payload)
    alert = {k: v for k, v in (("title", title), ("body", body)) if v is not None}
    payload = {
        "aps": {"alert": alert or {"body": f"{len(items)} notifications"}},
        "pushgw_digest": {
            "count": len(items),
            "apns_ids": [i.apns_id for i in items],
            "window_end_ms": first.window_end_ms,
        },
    }
    return Notification(
        apns_id=str(uuid.uuid5(DIGEST_NS, f"{first.app_id}/{first.apns_id}")),
        app_id=first.app_id,
        token=first.token,
        topic=latest.topic,
        payload=msgspec.json.encode(payload),
        priority=max(i.priority for i in items),
        push_type="alert",
        device_id=latest.device_id,
        kind=TokenKind(latest.kind),
    )


class DigestWorker(_Periodic):
    """Commits a summary for every window that has ended (see the module doc)."""

    name = "digest"

    def __init__(self, store: Any, engine: Any, *, interval_s: float = 1.0, retention_s: int = 30 * 86400) -> None:
        self.store = store
        self.engine = engine  # the plain engine: a summary is never digested again
        self.interval_s = interval_s
        self.retention_ms = retention_s * 1000

    async def tick(self) -> None:
        await self.run_once()

    async def run_once(self, now_ms: int | None = None) -> int:
        """Summarize every ended window; returns the number of summaries committed."""
        now_ms = now_ms if now_ms is not None else _now_ms()
        made = 0
        for app_id, token in await self.store.due_digests(now_ms):
            items = await self.store.digest_window(app_id, token, now_ms)
            if not items:
                continue  # another worker got there first
            gone = await token_gone(self.store, token)
            if gone is not None:
                await self.store.drop_digested([i.id for i in items], gone, now_ms)
                DROPPED.inc()
                continue
            summary = summary_for(items)
            await self.engine.accept(summary)  # durable first, then the pointers
            await self.store.mark_digested([i.id for i in items], summary.apns_id, now_ms)
            SUMMARIES.inc()
            made += 1
        await self.store.purge_digest_items(now_ms - self.retention_ms)
        return made
