"""Live Activity pushes: the payload rules of shared/APNS.md section 7.

A ``liveactivity`` push addresses ``<bundle>.push-type.liveactivity`` (checked
with every push type's suffix in ``schemas.push_types``) and carries in
``aps``:

* ``event``: ``start``, ``update`` or ``end`` (required);
* ``timestamp``: seconds since the epoch; the newest one is displayed, so the
  gateway uses it to drop out-of-order updates (required);
* ``content-state``: the activity's dynamic state (required: an update
  without one has nothing to show, an end carries the final state);
* ``stale-date``, ``dismissal-date``: epoch seconds (typed by
  ``schemas.payload``); ``dismissal-date`` only means something with ``end``;
* for ``start`` (push-to-start): ``attributes-type``, ``attributes`` and an
  ``alert``.

Apple allows priority 5 and 10 only.  Its reason strings for a malformed
Live Activity body on ``/3/device`` are not documented (APNS.md section 3
lists malformed JSON as UNCONFIRMED), so a payload error answers
``BadRequestPayload`` (``schemas.errors.BadPayload``), the string the gateway
uses for every malformed body, and a bad priority ``BadPriority``.

``activity_update`` reads (event, timestamp) back from a stored payload for
the per-activity ordering rules applied at delivery (docs/design.md).
"""

from __future__ import annotations

from typing import Final

import msgspec
from msgspec import UNSET

from schemas.errors import BadPayload, BadPriority
from schemas.payload import Payload

LIVE_ACTIVITY: Final = "liveactivity"
EVENTS: Final = ("start", "update", "end")
#: Apple: Live Activity pushes use priority 5 or 10 (priority 10 counts against the budget).
PRIORITIES: Final = frozenset({5, 10})


def validate_live_activity(payload: Payload, priority: int) -> None:
    """Raise ``BadPayload`` / ``BadPriority`` unless this is a well-formed Live Activity push."""
    if priority not in PRIORITIES:
        raise BadPriority("liveactivity pushes must use apns-priority 10 or 5")
    aps = payload.aps
    if aps is UNSET:
        raise BadPayload("liveactivity push needs an aps dictionary")
    if aps.event is UNSET:
        raise BadPayload("liveactivity push needs aps.event (start, update or end)")
    if aps.timestamp is UNSET:
        raise BadPayload("liveactivity push needs aps.timestamp (epoch seconds)")
    if aps.content_state is UNSET:
        raise BadPayload("liveactivity push needs aps.content-state")
    if aps.dismissal_date is not UNSET and aps.event != "end":
        raise BadPayload("aps.dismissal-date is only allowed with event end")
    if aps.event == "start":
        if aps.attributes_type is UNSET or aps.attributes is UNSET:
            raise BadPayload("liveactivity start needs aps.attributes-type and aps.attributes")
        if aps.alert is UNSET:
            raise BadPayload("liveactivity start needs aps.alert")


class _Aps(msgspec.Struct, frozen=True):
    event: str = "update"
    timestamp: float = 0.0


class _Body(msgspec.Struct, frozen=True):
    aps: _Aps = _Aps()


_reader: Final = msgspec.json.Decoder(_Body)


def activity_update(payload: bytes) -> tuple[str, float]:
    """(event, timestamp) of a stored, already validated Live Activity payload."""
    try:
        body = _reader.decode(payload)
    except msgspec.DecodeError:
        # Stored before validation existed (or by a bridge path): treat as an
        # update at time 0, so it never overtakes a real update.
        return "update", 0.0
    return body.aps.event, body.aps.timestamp

