"""The notification payload: a JSON object whose Apple keys live in ``aps``.

``validate_aps_payload`` is shared by the HTTP/2 listener (through
``schemas.apns.validate_payload``) and the REST API, so both paths accept
and refuse exactly the same bodies.  The rules come from shared/APNS.md
section 3:

* empty body -> ``PayloadEmpty``; more bytes than the limit -> ``PayloadTooLarge``
  (size is checked before parsing, so oversized bodies cost no decode);
* not one JSON object, ``aps`` not an object, or a documented ``aps`` key
  of the wrong type -> ``BadPayload`` (reason ``BadRequestPayload``).

Custom keys beside ``aps`` are the provider's business and only have to be
valid JSON.  Unknown keys inside ``aps`` are tolerated because Apple
ignores them (and adds new ones every year).  ``aps`` itself is optional:
MDM pushes are ``{"mdm": "<PushMagic>"}``.

The body is decoded once by msgspec into typed structs (no ``json.loads``,
no per-key Python checks) and returned unchanged: the device receives the
bytes the provider sent.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType, field

from schemas.errors import BadPayload, PayloadEmpty, PayloadTooLarge

# Apple documents these numeric flags as "number 1".  Many server libraries
# also send 0 to mean "off", which Apple tolerates, so a drop-in gateway must
# accept 0 too; anything else (true, 2, "1") is refused.
One = Literal[1]
Flag = Literal[0, 1]

InterruptionLevel = Literal["passive", "active", "time-sensitive", "critical"]
LiveActivityEvent = Literal["start", "update", "end"]

# Seconds since the epoch; Apple decodes these as Swift Dates, so fractions are fine.
EpochSeconds = Annotated[float, Meta(ge=0)]


class LocalizedText(msgspec.Struct, frozen=True):
    """Live Activity alerts put ``{"loc-key", "loc-args"}`` where a string would go."""

    loc_key: str | UnsetType = field(name="loc-key", default=UNSET)
    loc_args: list[str] | UnsetType = field(name="loc-args", default=UNSET)


class Sound(msgspec.Struct, frozen=True):
    """Critical-alert sound dictionary."""

    critical: Literal[0, 1] | UnsetType = UNSET
    name: str | UnsetType = UNSET
    volume: Annotated[float, Meta(ge=0.0, le=1.0)] | UnsetType = UNSET


class Alert(msgspec.Struct, frozen=True):
    """The dictionary form of ``aps.alert``."""

    title: str | LocalizedText | UnsetType = UNSET
    subtitle: str | LocalizedText | UnsetType = UNSET
    body: str | LocalizedText | UnsetType = UNSET
    launch_image: str | UnsetType = field(name="launch-image", default=UNSET)
    title_loc_key: str | UnsetType | None = field(name="title-loc-key", default=UNSET)
    title_loc_args: list[str] | UnsetType | None = field(name="title-loc-args", default=UNSET)
    subtitle_loc_key: str | UnsetType | None = field(name="subtitle-loc-key", default=UNSET)
    subtitle_loc_args: list[str] | UnsetType | None = field(name="subtitle-loc-args", default=UNSET)
    loc_key: str | UnsetType | None = field(name="loc-key", default=UNSET)
    loc_args: list[str] | UnsetType | None = field(name="loc-args", default=UNSET)
    action: str | UnsetType = UNSET
    # null is the legacy way to show only an OK button, so it stays allowed.
    action_loc_key: str | UnsetType | None = field(name="action-loc-key", default=UNSET)
    summary_arg: str | UnsetType = field(name="summary-arg", default=UNSET)
    summary_arg_count: int | UnsetType = field(name="summary-arg-count", default=UNSET)
    # Live Activity samples nest the sound inside the alert.
    sound: str | Sound | UnsetType = UNSET


class Aps(msgspec.Struct, frozen=True):
    """The ``aps`` dictionary: every key Apple documents, with its type."""

    alert: str | Alert | UnsetType = UNSET
    badge: int | UnsetType = UNSET
    sound: str | Sound | UnsetType = UNSET
    thread_id: str | UnsetType = field(name="thread-id", default=UNSET)
    category: str | UnsetType = UNSET
    content_available: Flag | UnsetType = field(name="content-available", default=UNSET)
    mutable_content: Flag | UnsetType = field(name="mutable-content", default=UNSET)
    target_content_id: str | UnsetType = field(name="target-content-id", default=UNSET)
    interruption_level: InterruptionLevel | UnsetType = field(name="interruption-level", default=UNSET)
    # 0-1 for notifications but any double for Live Activities: only the type is checked.
    relevance_score: float | UnsetType = field(name="relevance-score", default=UNSET)
    filter_criteria: str | UnsetType = field(name="filter-criteria", default=UNSET)
    # Live Activities (ActivityKit push guide).
    stale_date: EpochSeconds | UnsetType = field(name="stale-date", default=UNSET)
    content_state: dict[str, Any] | UnsetType = field(name="content-state", default=UNSET)
    timestamp: EpochSeconds | UnsetType = UNSET
    event: LiveActivityEvent | UnsetType = UNSET
    dismissal_date: EpochSeconds | UnsetType = field(name="dismissal-date", default=UNSET)
    attributes_type: str | UnsetType = field(name="attributes-type", default=UNSET)
    attributes: dict[str, Any] | UnsetType = UNSET
    input_push_token: One | UnsetType = field(name="input-push-token", default=UNSET)
    input_push_channel: str | UnsetType = field(name="input-push-channel", default=UNSET)
    # Widgets (WidgetKit push) and legacy Safari web push.
    content_changed: bool | UnsetType = field(name="content-changed", default=UNSET)
    url_args: list[str] | UnsetType = field(name="url-args", default=UNSET)


class Payload(msgspec.Struct, frozen=True):
    """A whole body.  Only ``aps`` is typed; other top-level keys are skipped
    (msgspec still checks that they are well-formed JSON)."""

    aps: Aps | UnsetType = UNSET


_decoder: Final = msgspec.json.Decoder(Payload)


def parse_payload(body: bytes) -> Payload:
    """Decode ``body`` (already size-checked) or raise ``BadPayload``."""
    try:
        payload = _decoder.decode(body)
        if not body.isascii():
            # msgspec checks UTF-8 only in strings it decodes, not in skipped
            # custom keys; JSON must be UTF-8 throughout (RFC 8259), and the
            # device SDK and REST API must be able to read what we store.
            body.decode("utf-8")
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # ValidationError is a DecodeError
        raise BadPayload(_describe(exc)) from None
    except RecursionError:
        # Deeply nested custom data exhausts the C decoder's recursion guard.
        raise BadPayload("payload nested too deeply") from None
    return payload


def validate_aps_payload(body: bytes, limit: int) -> bytes:
    """Check a notification body against Apple's payload rules; return it unchanged.

    Order: ``PayloadEmpty``, ``PayloadTooLarge`` (``len(body) > limit``),
    then ``BadPayload`` for anything that is not a well-typed JSON object.
    """
    size = len(body)
    if size == 0:
        raise PayloadEmpty("the request has no body")
    if size > limit:
        raise PayloadTooLarge(f"payload is {size} bytes, the limit is {limit}")
    parse_payload(body)
    return body


def _describe(exc: Exception) -> str:
    # msgspec says "Expected `object`, got `array`" for a non-object body and
    # "... - at `$.aps.badge`" for a bad key: both are precise enough to return.
    return str(exc)
