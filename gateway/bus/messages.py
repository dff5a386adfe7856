"""What travels on a shard channel.  msgpack, tagged union."""

from __future__ import annotations

import msgspec

from schemas.notification import StoredNotification


class PushMessage(msgspec.Struct, frozen=True, tag="push"):
    """A committed notification for a device believed to be on this shard."""

    notification: StoredNotification
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


ShardMessage = PushMessage | KickMessage | DrainMessage | SettingsMessage

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(ShardMessage)


def encode(message: ShardMessage) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes) -> ShardMessage:
    return _decoder.decode(data)
