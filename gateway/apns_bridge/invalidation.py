"""Token invalidation: the one place a token's end becomes feedback.

Called for every token that stops being valid (device unregistered it,
device deleted, Apple answered 410/BadDeviceToken/DeviceTokenNotForTopic).
It lives in ``gateway`` because DESIGN.md lets only the composition root
import ``feedback``; ``feedback.records`` re-exports it for the feedback
API.  The feedback record and the webhook outbox row are both durable, so
the webhook is delivered at least once even if this process dies next.
"""

from __future__ import annotations

import time

import orjson
from prometheus_client import Counter

from gateway.store.base import Store

KNOWN_REASONS = frozenset(
    {"Unregistered", "ExpiredToken", "BadDeviceToken", "DeviceTokenNotForTopic", "DeviceDeleted", "DeviceUnregistered"}
)
FEEDBACK_RECORDS = Counter("pushgw_feedback_records_total", "Tokens that stopped being valid", ["reason"])
_RECORD_CHILDREN = {r: FEEDBACK_RECORDS.labels(r) for r in (*KNOWN_REASONS, "other")}


def webhook_event(app_id: int, token: str, reason: str, at_ms: int) -> bytes:
    """The body POSTed to the app's webhook (also stored verbatim in the outbox)."""
    event = {"type": "token.invalidated", "app_id": app_id, "token": token, "reason": reason, "at_ms": at_ms}
    return orjson.dumps(event)


async def token_invalidated(store: Store, app_id: int, token: str, reason: str, at_ms: int | None = None) -> None:
    """Record feedback for ``token`` and enqueue a webhook event if the app has a webhook.

    Does not mark the token inactive: the caller did that already (or, for
    the bridge, does it with Apple's timestamp via ``store.unregister_token``).
    """
    at_ms = at_ms if at_ms is not None else int(time.time() * 1000)
    await store.record_feedback(app_id, token, reason, at_ms)
    _RECORD_CHILDREN.get(reason, _RECORD_CHILDREN["other"]).inc()
    if await store.get_webhook(app_id) is not None:
        await store.enqueue_webhook(app_id, webhook_event(app_id, token, reason, at_ms), int(time.time() * 1000))
