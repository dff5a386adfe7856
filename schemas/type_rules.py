"""Payload rules that depend on the push type, shared by every intake path.

``validate_aps_payload`` (``schemas.payload``) checks what all bodies have in
common; ``check_body`` then applies the rules of the two push types Apple
ties to a payload shape: ``liveactivity`` (``schemas.liveactivity``) and
``background`` (``schemas.background``).  The HTTP/2 listener (through
``schemas.apns.validate_payload``), the REST send endpoints and the schedule
API all call it, so the three accept and refuse the same bodies with the
same reasons.  Those bodies are decoded a second time, which costs
microseconds on paths that are rare compared with alerts.
"""

from __future__ import annotations

from schemas.background import BACKGROUND, validate_background
from schemas.liveactivity import LIVE_ACTIVITY, validate_live_activity
from schemas.payload import parse_payload


def check_body(push_type: str, priority: int, body: bytes) -> None:
    """Raise the push type's reason unless ``body`` (already ``validate_aps_payload``-ed) fits it."""
    if push_type == LIVE_ACTIVITY:
        validate_live_activity(parse_payload(body), priority)
    elif push_type == BACKGROUND:
        validate_background(parse_payload(body))
