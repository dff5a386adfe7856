"""Validation of an APNs device request: ``POST /3/device/<token>`` plus its headers and body.

Pure functions, no I/O: the HTTP/2 listener calls ``validate_headers`` when
a HEADERS frame completes (before any DATA arrives), authorizes the
request, then calls ``validate_payload`` when the stream ends.  Every
violation raises the exact leaf of ``schemas.errors``, whose ``status`` and
``reason`` go on the wire unchanged.

Order of the checks
-------------------
Apple does not publish its order; we follow pushy's MockApnsServer
(shared/APNS.md section 4) where it has a check, and put our additions where
they cannot hide one of its answers:

 1. ``DuplicateHeaders``   any regular header repeated (structural: until it is
                           ruled out no header value can be trusted)
 2. ``BadMessageId``       ``apns-id`` present but not a UUID
 3. ``MethodNotAllowed``   ``:method`` other than POST
 4. ``MissingTopic``       ``apns-topic`` absent or empty
    ``BadTopic``           ``apns-topic`` not a plausible bundle id
 5. ``BadCollapseId``      ``apns-collapse-id`` over 64 UTF-8 bytes
 6. ``BadPriority``        ``apns-priority`` not 10, 5 or 1
 7. ``InvalidPushType``    ``apns-push-type`` unknown
 8. ``BadTopic``           topic lacks the push type's suffix (needs 7)
    ``BadPriority``        background push with priority 10 or 1 (needs 6 and 7)
 9. ``BadPath``            ``:path`` not under ``/3/device/``
    ``MissingDeviceToken`` ``/3/device/`` with nothing after it
    ``BadDeviceToken``     token not even-length hex of 2..200 characters
10. ``BadExpirationDate``  ``apns-expiration`` not an integer >= 0 (pushy has no check)
11. ``BadRequestParams``   ``pushgw-deliver-at`` not an integer >= 0 (pushgw extension)

-- the listener authenticates here (403s), then on END_STREAM:

12. ``PayloadEmpty``, ``PayloadTooLarge``, ``BadPayload`` (``schemas.payload``), then the
    push type's own body rules (``schemas.type_rules``: Live Activity, background)

Normalisation: the token and ``apns-id`` are lowercased (Apple accepts hex
in either case and echoes lowercase ids); an empty ``apns-collapse-id`` counts
as absent.  Header names must already be lowercase, which HTTP/2 requires
and h2 enforces, so they are not lowercased again here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import msgspec

from schemas.errors import (
    BadCollapseId,
    BadDeviceToken,
    BadExpirationDate,
    BadMessageId,
    BadPath,
    BadPriority,
    BadRequestParams,
    BadTopic,
    DuplicateHeaders,
    MethodNotAllowed,
    MissingDeviceToken,
    MissingTopic,
)
from schemas.payload import validate_aps_payload
from schemas.push_types import (
    DEFAULT_PUSH_TYPE,
    PAYLOAD_LIMIT,
    check_priority,
    check_push_type,
    check_topic_suffix,
    default_priority,
)
from schemas.type_rules import check_body

#: Prefix of every device-push path.
DEVICE_PATH: Final = "/3/device/"
#: Apple says not to assume a token size; 100 bytes (WWDC15) is the largest
#: ever mentioned, 160 hex characters the largest observed.
MAX_TOKEN_HEX: Final = 200
#: Apple's bundle ids are at most 155 characters; the longest suffix adds 23.
MAX_TOPIC: Final = 255
MAX_COLLAPSE_ID_BYTES: Final = 64
#: Largest value a BIGINT column (store) can hold.
MAX_INT64: Final = 2**63 - 1

DELIVER_AT_HEADER: Final = "pushgw-deliver-at"

# Compiled once: the listener runs these about 10k times a second.  Explicit
# ASCII classes, since \d and \w would also match non-ASCII digits/letters.
_HEX: Final = re.compile(r"[0-9a-fA-F]+")
_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# Apple: bundle ids use only A-Z, a-z, 0-9, hyphen and period; no empty segment.
_TOPIC: Final = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


class ApnsHeaders(msgspec.Struct, frozen=True):
    """The validated, normalised request line and APNs headers of one push."""

    token: str  # lowercase hex
    topic: str  # as sent, suffix included
    apns_id: str | None = None  # lowercase UUID, None when the provider sent none
    priority: int = 10
    push_type: str = DEFAULT_PUSH_TYPE
    expiration: int | None = None  # epoch seconds; 0 = one attempt
    collapse_id: str | None = None
    authorization: str | None = None  # raw header value ("bearer <JWT>"), checked by auth
    deliver_at_ms: int | None = None  # pushgw-deliver-at, epoch milliseconds


def validate_headers(method: str, path: str, headers: Sequence[tuple[str, str]]) -> ApnsHeaders:
    """Validate the request line and regular headers; see the module docstring for the order.

    ``headers`` are the non-pseudo headers as (lowercase name, value) pairs.
    """
    fields = dict(headers)
    if len(fields) != len(headers):
        raise DuplicateHeaders(f"repeated header {_first_repeated(headers)[:40]!r}")
    get = fields.get

    apns_id = get("apns-id")
    if apns_id is not None:
        if _UUID.fullmatch(apns_id) is None:
            raise BadMessageId("apns-id must be a UUID (8-4-4-4-12 hex digits)")
        apns_id = apns_id.lower()

    if method != "POST":
        raise MethodNotAllowed(f"method {method[:20]!r} is not allowed, use POST")

    topic = get("apns-topic")
    if not topic:
        raise MissingTopic("apns-topic is required")
    if len(topic) > MAX_TOPIC or _TOPIC.fullmatch(topic) is None:
        raise BadTopic("apns-topic is not a bundle id")

    collapse_id = get("apns-collapse-id") or None
    if collapse_id is not None and (
        # len() in characters is a lower bound of the UTF-8 size: skip encoding when it already decides.
        len(collapse_id) > MAX_COLLAPSE_ID_BYTES
        or (not collapse_id.isascii() and len(collapse_id.encode("utf-8", "surrogatepass")) > MAX_COLLAPSE_ID_BYTES)
    ):
        raise BadCollapseId(f"apns-collapse-id exceeds {MAX_COLLAPSE_ID_BYTES} bytes")

    raw_priority = get("apns-priority")
    priority: int | None = None
    if raw_priority is not None:
        priority = _PRIORITY_VALUES.get(raw_priority)
        if priority is None:
            raise BadPriority("apns-priority must be 10, 5 or 1")

    raw_push_type = get("apns-push-type")
    push_type = DEFAULT_PUSH_TYPE if raw_push_type is None else check_push_type(raw_push_type)
    check_topic_suffix(topic, push_type)
    if priority is None:
        priority = default_priority(push_type)
    else:
        check_priority(push_type, priority)

    token = _token_from_path(path)

    raw_expiration = get("apns-expiration")
    expiration: int | None = None
    if raw_expiration is not None:
        expiration = _parse_uint(raw_expiration)
        if expiration is None:
            raise BadExpirationDate("apns-expiration must be an integer >= 0 (epoch seconds)")

    raw_deliver_at = get(DELIVER_AT_HEADER)
    deliver_at_ms: int | None = None
    if raw_deliver_at is not None:
        deliver_at_ms = _parse_uint(raw_deliver_at)
        if deliver_at_ms is None:
            raise BadRequestParams(f"{DELIVER_AT_HEADER} must be an integer >= 0 (epoch milliseconds)")

    return ApnsHeaders(
        token=token,
        topic=topic,
        apns_id=apns_id,
        priority=priority,
        push_type=push_type,
        expiration=expiration,
        collapse_id=collapse_id,
        authorization=get("authorization"),
        deliver_at_ms=deliver_at_ms,
    )


def validate_payload(headers: ApnsHeaders, body: bytes) -> bytes:
    """Check ``body`` against the payload rules and the push type's size limit; return it unchanged."""
    validate_aps_payload(body, PAYLOAD_LIMIT[headers.push_type])
    check_body(headers.push_type, headers.priority, body)
    return body


def validate_request(
    method: str, path: str, headers: Sequence[tuple[str, str]], body: bytes
) -> tuple[ApnsHeaders, bytes]:
    """``validate_headers`` then ``validate_payload``, for callers that have the whole request."""
    parsed = validate_headers(method, path, headers)
    return parsed, validate_payload(parsed, body)


# --- helpers -----------------------------------------------------------------

# Exact strings only: "05", " 5" or "+5" are not priorities.
_PRIORITY_VALUES: Final[dict[str, int]] = {"10": 10, "5": 5, "1": 1}


def _token_from_path(path: str) -> str:
    if not path.startswith(DEVICE_PATH):
        raise BadPath("path must be /3/device/<device-token>")
    token = path[len(DEVICE_PATH) :]
    if not token:
        raise MissingDeviceToken("no device token in the path")
    if len(token) > MAX_TOKEN_HEX or len(token) % 2 or _HEX.fullmatch(token) is None:
        raise BadDeviceToken("device token must be an even number of hex digits")
    return token.lower()


def _parse_uint(value: str) -> int | None:
    """A non-negative decimal that fits in int64, or None.

    ``int()`` alone would accept "+5", " 5", "1_000" and non-ASCII digits.
    """
    if not value or len(value) > 19 or not value.isascii() or not value.isdigit():
        return None
    number = int(value)
    return number if number <= MAX_INT64 else None


def _first_repeated(headers: Sequence[tuple[str, str]]) -> str:
    seen: set[str] = set()
    for name, _ in headers:
        if name in seen:
            return name
        seen.add(name)
    return ""
