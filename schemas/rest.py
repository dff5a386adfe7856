"""REST API bodies (provider_api/rest_*.py), as frozen msgspec structs.

The structs are both the decoder and the documentation: provider_api/openapi.py
derives the OpenAPI components from them, so the document cannot drift from
what the server accepts and returns.

Decoding maps msgspec's errors to the APNs reason strings the HTTP/2 path
uses for the same mistake (a bad ``priority`` field is ``BadPriority``, as a
bad ``apns-priority`` header is), so a provider sees one vocabulary on both
wires.  Malformed JSON is ``BadRequestPayload``; a well-formed body with an
unknown or mistyped field that has no APNs counterpart is ``BadRequestParams``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, TypeVar

import msgspec

from schemas.errors import (
    BadCollapseId,
    BadDeviceToken,
    BadExpirationDate,
    BadMessageId,
    BadPayload,
    BadPriority,
    BadRequestParams,
    BadTopic,
    InvalidPushType,
    MissingDeviceToken,
    MissingTopic,
    PayloadEmpty,
    PushgwError,
)
from schemas.notification import Environment, TimelineEvent, TokenKind

#: Most notifications one batch request may carry.
BATCH_MAX = 500

_JsonObject = Annotated[msgspec.Raw, msgspec.Meta(extra_json_schema={"type": "object"})]
_Short = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]


class _Body(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


# --- requests -----------------------------------------------------------------


class RegisterDeviceRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user_id: _Short | None = None


class IssueTokenRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    topic: _Short
    environment: Environment = Environment.PRODUCTION


class ApnsTokenRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    token: _Short
    topic: _Short
    environment: Environment = Environment.PRODUCTION
    user_id: _Short | None = None


class SendRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One push to one token: the REST spelling of ``POST /3/device/<token>``.

    ``payload`` is kept as the raw JSON bytes the provider sent, so the device
    receives them byte for byte.
    """

    token: str
    topic: str
    payload: _JsonObject
    priority: int | None = None  # 10 when absent (5 for background), as at Apple
    push_type: str | None = None  # "alert" when absent, as at Apple
    expiration: int | None = None  # epoch seconds; 0 = one attempt
    collapse_id: str | None = None
    apns_id: str | None = None  # lowercase UUID; generated when absent; the idempotency key
    deliver_at_ms: int | None = None  # scheduled delivery (pushgw extension)


class _FanOutFields(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    payload: _JsonObject
    topic: str | None = None  # default: each token's own topic
    priority: int | None = None  # 10 when absent (5 for background), as at Apple
    push_type: str | None = None
    expiration: int | None = None
    collapse_id: str | None = None
    deliver_at_ms: int | None = None


class TopicSendRequest(_FanOutFields, frozen=True, kw_only=True, forbid_unknown_fields=True):
    channel: _Short


class UserSendRequest(_FanOutFields, frozen=True, kw_only=True, forbid_unknown_fields=True):
    user_id: _Short


class BatchSendRequest(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    notifications: Annotated[list[SendRequest], msgspec.Meta(min_length=1, max_length=BATCH_MAX)]


class _BatchRaw(_Body, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a batch is actually decoded: items one by one, so one bad item
    gets its own error instead of failing its 499 neighbours."""

    notifications: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=BATCH_MAX)]


# --- responses ----------------------------------------------------------------


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    reason: str
    timestamp: int | None = None  # 410 only: when the token became invalid (ms)


class DeviceCredentials(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    secret: str  # shown once; authenticates the device's WebSocket


class TokenInfo(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    topic: str
    environment: Environment
    kind: TokenKind
    active: bool
    device_id: str | None
    user_id: str | None
    invalidated_at_ms: int | None


class DeviceInfo(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    user_id: str | None
    created_at_ms: int
    tokens: list[TokenInfo]


class SendResult(msgspec.Struct, frozen=True, kw_only=True):
    apns_id: str
    status: str  # notification status (pending, delivered, ...)
    duplicate: bool = False  # apns_id was already accepted: this is the original result


class ItemResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Outcome of one notification of a batch or user send.

    ``code`` is the HTTP status a single send would have got; on success
    ``apns_id``/``status`` are set, on failure ``reason`` (and ``timestamp``
    for 410).
    """

    code: int
    index: int | None = None
    token: str | None = None
    apns_id: str | None = None
    status: str | None = None
    duplicate: bool = False
    reason: str | None = None
    timestamp: int | None = None


class BatchSendResult(msgspec.Struct, frozen=True, kw_only=True):
    accepted: int
    failed: int
    results: list[ItemResult]


class UserSendResult(msgspec.Struct, frozen=True, kw_only=True):
    user_id: str
    accepted: int
    failed: int
    results: list[ItemResult]


class TopicSendResult(msgspec.Struct, frozen=True, kw_only=True):
    channel: str
    matched: int  # active tokens subscribed to the channel
    accepted: int
    failed: int
    reasons: dict[str, int]  # failure reason -> count


class NotificationView(msgspec.Struct, frozen=True, kw_only=True):
    apns_id: str
    token: str
    topic: str
    priority: int
    status: str
    reason: str | None
    timeline: list[TimelineEvent]
    summary_apns_id: str | None = None  # digested: the summary push that stands for this one


# --- decoding -----------------------------------------------------------------

T = TypeVar("T")

# A field whose value is wrong gets the reason of the APNs header it stands for.
_FIELD_REASON: dict[str, type[PushgwError]] = {
    "token": BadDeviceToken,
    "topic": BadTopic,
    "payload": BadPayload,
    "priority": BadPriority,
    "push_type": InvalidPushType,
    "expiration": BadExpirationDate,
    "collapse_id": BadCollapseId,
    "apns_id": BadMessageId,
}
# A field that is absent gets the reason Apple gives for the missing header.
_MISSING_REASON: dict[str, type[PushgwError]] = {
    "token": MissingDeviceToken,
    "topic": MissingTopic,
    "payload": PayloadEmpty,
}
_AT_FIELD = re.compile(r"at `\$\.(\w+)")
_MISSING_FIELD = re.compile(r"missing required field `(\w+)`")

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode(body: bytes, kind: type[T]) -> T:
    """Decode and validate a request body, raising the matching leaf error."""
    dec = _decoders.get(kind)
    if dec is None:
        dec = _decoders[kind] = msgspec.json.Decoder(kind)
    if not body.strip():
        # An empty body is an empty object for bodies with no required field.
        body = b"{}"
    try:
        return dec.decode(body)
    except msgspec.ValidationError as exc:
        raise _translate(str(exc)) from exc
    except msgspec.DecodeError as exc:
        raise BadPayload(str(exc)) from exc


def decode_batch(body: bytes) -> list[msgspec.Raw]:
    return decode(body, _BatchRaw).notifications


def _translate(message: str) -> PushgwError:
    missing = _MISSING_FIELD.search(message)
    if missing:
        cls = _MISSING_REASON.get(missing.group(1), BadRequestParams)
        return cls(message)
    at = _AT_FIELD.search(message)
    if at:
        cls = _FIELD_REASON.get(at.group(1), BadRequestParams)
        return cls(message)
    return BadRequestParams(message)
