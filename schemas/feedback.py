"""Feedback and webhook REST bodies (feedback/api.py), as msgspec structs.

The handlers encode their answers with these structs and decode the webhook
body with ``WebhookRequest``; provider_api/openapi.py documents the routes
from the same structs, so the document and the server cannot disagree.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec


class FeedbackRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int  # page with ?after=<id>
    token: str
    reason: str  # Unregistered | DeviceDeleted | BadDeviceToken | DeviceTokenNotForTopic
    timestamp: int  # ms since the epoch: when the token stopped being valid


class FeedbackPage(msgspec.Struct, frozen=True, kw_only=True):
    feedback: list[FeedbackRecord]
    next_after: int | None  # pass as ?after= for the next page; null on the last page


class WebhookRequest(msgspec.Struct, frozen=True, kw_only=True):
    url: str  # http(s) URL, at most 2048 characters
    secret: str | None = None  # 16..256 characters; generated when omitted


class WebhookView(msgspec.Struct, frozen=True, kw_only=True):
    url: str
    secret: str  # HMAC-SHA256 key of X-Pushgw-Signature


class WebhookDelivery(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    state: Literal["pending", "delivered", "dead"]
    attempts: int
    next_attempt_ms: int
    last_error: str | None
    created_at_ms: int
    event: dict[str, Any]  # the signed JSON body the webhook receives


class WebhookDeliveries(msgspec.Struct, frozen=True, kw_only=True):
    deliveries: list[WebhookDelivery]
