"""What travels on a shard channel.  msgpack, tagged union."""

from __future__ import annotations

import msgspec

from schemas.notification import StoredNotification


class PushMessage(msgspec.Struct, frozen=True, tag="push"):
    """A committed notification for a device believed to be on this shard."""

    notification: StoredNotification
    routed_at_ms: int


class PushBatchMessage(msgspec.Struct, frozen=True, tag="pushes"):
    """Committed notifications for devices believed to be on this shard, routed
    together: one bus message (one Redis command, one pub/sub read) per shard
    and routing batch instead of one per notification."""

    notifications: list[StoredNotification]
    routed_at_ms: int


class KickMessage(msgspec.Struct, frozen=True, tag="kick"):
    """Close the device's connections whose epoch is older than ``epoch``
    (a newer connection claimed it, possibly on another shard)."""

    device_id: str
    epoch: int


class DrainMessage(msgspec.Struct, frozen=True, tag="drain"):
    """Re-read the device's backlog from the store (e.g. scheduled pushes came due)."""

    device_id: str


class SettingsMessage(msgspec.Struct, frozen=True, tag="settings"):
    """The device's settings (quiet hours) changed: reload them from the store."""

    device_id: str


ShardMessage = PushMessage | PushBatchMessage | KickMessage | DrainMessage | SettingsMessage

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ShardMessage)


def encode(message: ShardMessage) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes) -> ShardMessage:
    return _decoder.decode(data)


def pushed(message: ShardMessage) -> list[StoredNotification]:
    """The notifications a push or push batch message carries (none for the others)."""
    if isinstance(message, PushBatchMessage):
        return message.notifications
    if isinstance(message, PushMessage):
        return [message.notification]
    return []
