"""Background pushes: the payload and priority rules of shared/APNS.md.

APNS.md section 2 says of ``apns-push-type: background``: priority "must be
5; 10 is an error", and "``aps`` = ``content-available:1`` only"; section 3
adds that ``content-available`` means "background; no alert/badge/sound".
The issue (8, item 2) restates it: ``content-available: 1``, priority 5
required.  So the gateway refuses:

* ``apns-priority`` other than 5 (10 *and* 1) -> ``BadPriority``, checked with
  the headers (``schemas.push_types.check_priority``); an absent header
  means 5 for background pushes, so omitting it is never an error;
* an ``aps`` without ``content-available: 1`` -> ``InvalidPushType``;
* an ``aps`` carrying any other key Apple documents (``alert``, ``badge``,
  ``sound``, ``interruption-level``...) -> ``InvalidPushType``.

Why ``InvalidPushType``: Apple's table has no payload reason for this case;
APNS.md section 2 says the push type "must match payload or APNs may
error/delay/drop", and ``InvalidPushType`` is the reason tied to that
header.  Keys inside ``aps`` that Apple does not document are tolerated, as
for every push type (``schemas.payload``: Apple ignores them); custom keys
beside ``aps`` (the data the app syncs with) are the provider's business.
"""

from __future__ import annotations

from typing import Final

from msgspec import UNSET

from schemas.errors import InvalidPushType
from schemas.payload import Aps, Payload

BACKGROUND: Final = "background"
#: The only priority Apple allows for background pushes.
PRIORITY: Final = 5

# (attribute, wire name) of every documented aps key but content-available.
_OTHER_KEYS: Final = tuple(
    (attr, name)
    for attr, name in zip(Aps.__struct_fields__, Aps.__struct_encode_fields__, strict=True)
    if name != "content-available"
)


def validate_background(payload: Payload) -> None:
    """Raise ``InvalidPushType`` unless ``aps`` is exactly ``content-available: 1``."""
    aps = payload.aps
    if aps is UNSET or aps.content_available != 1:
        raise InvalidPushType("background pushes need aps.content-available: 1")
    for attr, name in _OTHER_KEYS:
        if getattr(aps, attr) is not UNSET:
            raise InvalidPushType(f"background pushes carry only aps.content-available, not aps.{name}")


def other_keys() -> list[str]:
    """Wire names of the aps keys a background push may not carry (for tests and docs)."""
    return [name for _, name in _OTHER_KEYS]

