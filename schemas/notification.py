"""The canonical notification, as accepted by any provider path.

Both the HTTP/2 APNs listener and the REST API turn their input into a
``Notification`` (validated, frozen) before ``gateway.delivery`` sees it.
The store persists it; the bus carries it to a shard; the shard turns it
into a device ``push`` frame.
"""

from __future__ import annotations

import enum

import msgspec


class Status(str, enum.Enum):
    """Lifecycle of one notification (DESIGN.md promise 9)."""

    PENDING = "pending"  # accepted, waiting for an ack (or relay)
    DELIVERED = "delivered"  # acked by the device
    EXPIRED = "expired"  # apns-expiration passed before an ack
    COLLAPSED = "collapsed"  # replaced by a newer one with the same collapse id
    DROPPED = "dropped"  # backlog cap overflow
    DISCARDED = "discarded"  # apns-expiration 0 and device not connected
    RELAYED = "relayed"  # handed to Apple (kind apns tokens)
    REJECTED = "rejected"  # Apple refused it (permanent reason)
    DIGESTING = "digesting"  # held by the app's digest rule until its window ends
    DIGESTED = "digested"  # folded into a summary push (gateway/digest.py)
    SUPERSEDED = "superseded"  # over the background budget; a newer background push replaced it
    STALE = "stale"  # Live Activity update older than the last one delivered
    ACTIVITY_ENDED = "activity_ended"  # Live Activity push after the activity's end

    @property
    def terminal(self) -> bool:
        return self is not Status.PENDING and self is not Status.DIGESTING


class TokenKind(str, enum.Enum):
    LOCAL = "local"  # issued by pushgw to a WebSocket device
    APNS = "apns"  # a real iPhone token, relayed to Apple


class Environment(str, enum.Enum):
    SANDBOX = "sandbox"
    PRODUCTION = "production"


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """A validated push request, ready to be stored.

    ``payload`` is the raw JSON object bytes exactly as the provider sent
    them (validated, never re-encoded), so what the device receives is
    byte-identical to what was posted.
    """

    apns_id: str  # lowercase UUID
    app_id: int
    token: str  # lowercase hex
    topic: str
    payload: bytes
    priority: int = 10
    push_type: str = "alert"
    expiration: int | None = None  # epoch seconds; 0 = one attempt; None = retention
    collapse_id: str | None = None
    # Filled by authorization from the token record; not provider input.
    device_id: str | None = None
    kind: TokenKind = TokenKind.LOCAL
    deliver_at_ms: int | None = None  # scheduled delivery (pushgw extension)


class StoredNotification(msgspec.Struct, frozen=True, kw_only=True):
    """A notification as read back from the store."""

    id: int  # store-internal, monotonically increasing per store
    apns_id: str
    app_id: int
    token: str
    topic: str
    payload: bytes
    priority: int
    push_type: str
    expiration: int | None
    collapse_id: str | None
    device_id: str | None
    kind: TokenKind
    status: Status
    accepted_at_ms: int


class AcceptResult(msgspec.Struct, frozen=True, kw_only=True):
    """What ``accept`` returns per notification, after the commit.

    ``duplicate`` is True when (app, apns-id) was already accepted: nothing
    new was stored and nothing will be delivered twice; ``status`` is the
    original notification's current status.
    """

    apns_id: str
    id: int
    duplicate: bool = False
    status: Status = Status.PENDING
    collapsed_id: int | None = None  # the older pending row this one replaced


class TimelineEvent(msgspec.Struct, frozen=True):
    event: str  # accepted | routed | sent | acked | expired | collapsed | ...
    at_ms: int


class NotificationStatus(msgspec.Struct, frozen=True, kw_only=True):
    apns_id: str
    app_id: int
    token: str
    topic: str
    priority: int
    status: Status
    reason: str | None
    timeline: list[TimelineEvent]
