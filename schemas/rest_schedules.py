"""REST bodies of recurring schedules and digest rules (provider_api/rest_schedules.py).

Same conventions as schemas/rest.py: frozen msgspec structs that are both
the decoder and the OpenAPI schema; decode them with ``schemas.rest.decode``
so a bad ``priority`` is ``BadPriority`` as everywhere else.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from schemas.rest import _JsonObject, _Short

#: Shortest period of an interval schedule.
MIN_EVERY_S = 1
#: Most payloads one schedule rotates through.
MAX_PAYLOADS = 32


class ScheduleRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A recurring push.  Exactly one target (``token`` or ``channel``), one
    of ``payload``/``payloads`` (rotated: slot k sends ``payloads[k % n]``) and
    one of ``every_s``/``cron`` (5 fields, evaluated in ``timezone``)."""

    token: str | None = None
    channel: _Short | None = None
    topic: str | None = None  # default: each token's own topic
    payload: _JsonObject | msgspec.UnsetType = msgspec.UNSET  # Raw cannot be unioned with None
    payloads: Annotated[list[_JsonObject], msgspec.Meta(min_length=1, max_length=MAX_PAYLOADS)] | None = None
    push_type: str | None = None  # "alert" when absent
    priority: int | None = None  # 10 when absent (5 for background)
    collapse_id: str | None = None
    ttl_s: Annotated[int, msgspec.Meta(ge=0)] | None = None  # each push expires ttl_s after its slot
    every_s: Annotated[int, msgspec.Meta(ge=MIN_EVERY_S)] | None = None
    cron: Annotated[str, msgspec.Meta(min_length=9, max_length=200)] | None = None
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=64)] = "UTC"
    start_at_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None  # first slot (interval); default: now
    paused: bool = False


class ScheduleView(msgspec.Struct, frozen=True, kw_only=True):
    schedule_id: str
    token: str | None
    channel: str | None
    topic: str | None
    push_type: str
    priority: int
    every_s: int | None
    cron: str | None
    timezone: str
    payload_count: int
    paused: bool
    next_slot_ms: int  # the next slot that will fire (when not paused)
    fired: int  # slots fired
    skipped: int  # slots skipped by the missed-slot policy
    last_slot_ms: int | None
    last_error: str | None  # why the last slot reached nobody (e.g. Unregistered)
    created_at_ms: int


class ScheduleList(msgspec.Struct, frozen=True, kw_only=True):
    """One page, in creation order.  ``next_after`` is the cursor of the next
    page (pass it as ``?after=``), null on the last one."""

    schedules: list[ScheduleView]
    next_after: str | None = None


class DigestRuleRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fold the alert pushes one token gets within ``window_s`` into one summary."""

    window_s: Annotated[int, msgspec.Meta(ge=1, le=86400)]
    max_priority: Annotated[int, msgspec.Meta(ge=1, le=10)] = 10  # only pushes at or below this priority


class DigestRuleView(msgspec.Struct, frozen=True, kw_only=True):
    window_s: int
    max_priority: int
    push_types: list[str]
    updated_at_ms: int
