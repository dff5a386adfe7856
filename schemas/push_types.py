"""The eleven APNs push types and the rules tied to each (shared/APNS.md section 2).

A push type fixes three things: the suffix its ``apns-topic`` must carry
(``<bundle>.voip`` for VoIP, ``<bundle>`` for alert...), the payload size
limit (4096 bytes, 5120 for VoIP) and, for ``background``, the priority.

Push types are plain lowercase strings, exactly as they travel in the
``apns-push-type`` header, so no conversion happens on the hot path.
"""

from __future__ import annotations

from typing import Final, Literal

from schemas.errors import BadPriority, BadTopic, InvalidPushType

PushType = Literal[
    "alert",
    "background",
    "complication",
    "controls",
    "fileprovider",
    "liveactivity",
    "location",
    "mdm",
    "pushtotalk",
    "voip",
    "widgets",
]

#: Used when a request carries no ``apns-push-type`` header (Apple's default).
DEFAULT_PUSH_TYPE: Final = "alert"

#: Required ``apns-topic`` suffix per push type.  Types with an empty suffix
#: address the bare bundle id (``mdm`` addresses the UID of the MDM cert).
TOPIC_SUFFIX: Final[dict[str, str]] = {
    "alert": "",
    "background": "",
    "complication": ".complication",
    "controls": ".push-type.controls",
    "fileprovider": ".pushkit.fileprovider",
    "liveactivity": ".push-type.liveactivity",
    "location": ".location-query",
    "mdm": "",
    "pushtotalk": ".voip-ptt",
    "voip": ".voip",
    "widgets": ".push-type.widgets",
}

#: Every push type Apple documents; anything else is ``InvalidPushType``.
PUSH_TYPES: Final[frozenset[str]] = frozenset(TOPIC_SUFFIX)

#: Maximum payload size in bytes.  Apple allows 5120 only for VoIP (and for
#: broadcast, which is not a device push); Live Activities stay at 4 KB.
PAYLOAD_LIMIT: Final[dict[str, int]] = {push_type: 4096 for push_type in TOPIC_SUFFIX} | {"voip": 5120}

#: The largest limit of any type: what a listener may buffer before it has
#: read the headers that tell it the real limit.
MAX_PAYLOAD_LIMIT: Final = max(PAYLOAD_LIMIT.values())

#: ``apns-priority`` values Apple accepts; 10 is the default when absent.
PRIORITIES: Final[frozenset[int]] = frozenset({10, 5, 1})
DEFAULT_PRIORITY: Final = 10


def check_push_type(push_type: str) -> str:
    """Return ``push_type`` if Apple knows it, else raise ``InvalidPushType``.

    Matching is exact (lowercase), as in pushy's mock server: Apple's header
    values are lowercase and accepting ``Alert`` here would let a provider
    pass the gateway and then fail at Apple when relayed.
    """
    if push_type not in PUSH_TYPES:
        raise InvalidPushType(f"unknown apns-push-type {push_type[:40]!r}")
    return push_type


def check_topic_suffix(topic: str, push_type: str) -> None:
    """Raise ``BadTopic`` unless ``topic`` carries the suffix ``push_type`` needs.

    The suffix must follow a non-empty bundle id (``.voip`` alone is no
    topic).  Types without a suffix accept any topic: a VoIP app may well be
    called ``com.acme.voip``, and its alert topic is then exactly that.
    """
    suffix = TOPIC_SUFFIX[push_type]
    if suffix and (len(topic) <= len(suffix) or not topic.endswith(suffix)):
        raise BadTopic(f"apns-push-type {push_type} needs a topic ending in {suffix}")


def base_topic(topic: str, push_type: str) -> str:
    """The bundle id a topic belongs to: ``topic`` without the push type's suffix.

    ``base_topic("com.acme.app.voip", "voip") == "com.acme.app"``; for alert,
    background and mdm the topic is returned unchanged.

    A topic that lacks the suffix its push type requires raises ``BadTopic``
    rather than being returned unchanged: authorization looks the bundle id
    up with this function, and silently treating ``com.acme.app`` as the
    bundle of a VoIP push would authorize a request Apple rejects.  An
    unknown push type raises ``InvalidPushType``.
    """
    check_push_type(push_type)
    check_topic_suffix(topic, push_type)
    suffix = TOPIC_SUFFIX[push_type]
    return topic[: -len(suffix)] if suffix else topic


def topic_for(bundle_id: str, push_type: str) -> str:
    """The ``apns-topic`` to use for ``bundle_id`` and ``push_type`` (inverse of ``base_topic``)."""
    check_push_type(push_type)
    return bundle_id + TOPIC_SUFFIX[push_type]


def check_priority(push_type: str, priority: int) -> None:
    """Raise ``BadPriority`` for a priority Apple refuses for this push type.

    Apple: background pushes "must be 5; 10 is an error" (shared/APNS.md
    section 2; its reason string is UNCONFIRMED).  We reject any other
    priority, 10 and 1 alike, with ``BadPriority``, so a provider that works
    against pushgw does not fail at Apple (``schemas.background``).  When the
    header is absent, ``schemas.apns`` defaults background pushes to 5
    instead of 10, so that omitting the header is never an error.
    """
    if priority not in PRIORITIES:
        raise BadPriority(f"apns-priority {priority} is not one of 10, 5, 1")
    if priority != 5 and push_type == "background":
        raise BadPriority("background pushes must use apns-priority 5")


def default_priority(push_type: str) -> int:
    """Priority used when ``apns-priority`` is absent: 10, but 5 for background."""
    return 5 if push_type == "background" else DEFAULT_PRIORITY
