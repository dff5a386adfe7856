"""Device WebSocket protocol v1 and v2: the frames (docs/protocol.md is the prose).

v2 adds one server frame, ``batch`` (a power burst: several pushes in one
frame), and one client frame, ``quiet`` (the device's quiet hours).  A v1
client never gets a ``batch``; its bursts come as consecutive ``push``
frames written to the socket at once.

JSON text frames, one object each, tagged by ``"type"``.  Decoding is
msgspec's: strict types, bounded strings and lists, unknown tags rejected, so
a bad frame costs one exception and never reaches the session's logic.

The push ``payload`` is carried as ``msgspec.Raw``: the provider's JSON bytes
are spliced into the frame unchanged (never re-encoded), so the device gets
exactly what was posted.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

#: The newest version this server speaks; ``hello`` without ``v`` means 1.
PROTOCOL_VERSION = 2
SUPPORTED_VERSIONS = frozenset({1, 2})

DeviceId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Secret = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Topic = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Token = Annotated[str, msgspec.Meta(min_length=2, max_length=200, pattern="^[0-9a-f]+$")]
RequestId = Annotated[str, msgspec.Meta(max_length=64)]
#: A single ack frame may carry at most this many ids (bounded work per frame).
MAX_ACK_IDS = 1024
#: Notification ids are BIGINT serials (1 .. 2**63-1): an id outside that range
#: would make the shard's batched ack statement fail for every device in it.
NotificationId = Annotated[int, msgspec.Meta(ge=1, le=2**63 - 1)]
AckIds = Annotated[list[NotificationId], msgspec.Meta(max_length=MAX_ACK_IDS)]


# --- close codes (docs/protocol.md, "Close codes") ----------------------------


class Close:
    NORMAL = 1000
    GOING_AWAY = 1001
    INTERNAL = 1011  # store/bus unavailable: reconnect with backoff
    SERVICE_RESTART = 1012  # clean shard shutdown; a reconnect frame came first
    TOO_BIG = 1009  # sent by the websockets layer itself (max_size)
    BAD_CREDENTIAL = 4001
    BAD_FRAME = 4002
    HELLO_TIMEOUT = 4003
    REPLACED = 4004  # a newer connection of this device exists (ghosting)
    TOO_SLOW = 4005  # the device does not read: write buffer over its bound
    UNSUPPORTED_VERSION = 4006


# --- device -> server ---------------------------------------------------------


class Hello(msgspec.Struct, frozen=True, tag="hello", forbid_unknown_fields=False):
    device_id: DeviceId
    secret: Secret
    v: int = 1
    awake: bool = True


class Ack(msgspec.Struct, frozen=True, tag="ack"):
    ids: AckIds


class Register(msgspec.Struct, frozen=True, tag="register"):
    topic: Topic
    environment: Literal["sandbox", "production"] = "production"
    rid: RequestId = ""


class Unregister(msgspec.Struct, frozen=True, tag="unregister"):
    token: Token
    rid: RequestId = ""


class State(msgspec.Struct, frozen=True, tag="state"):
    awake: bool


#: "HH:MM" on a 24-hour clock, local to the device's time zone.
ClockTime = Annotated[str, msgspec.Meta(pattern="^([01][0-9]|2[0-3]):[0-5][0-9]$")]
TimeZone = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Quiet(msgspec.Struct, frozen=True, tag="quiet", omit_defaults=True):
    """Set (start, end, tz) or clear (no fields) the device's quiet hours (v2)."""

    start: ClockTime | None = None
    end: ClockTime | None = None
    tz: TimeZone | None = None
    rid: RequestId = ""


ClientFrame = Hello | Ack | Register | Unregister | State | Quiet


# --- server -> device ---------------------------------------------------------


class Welcome(msgspec.Struct, frozen=True, tag="welcome"):
    epoch: int
    heartbeat: float  # server ping interval, seconds
    window: int  # unacked pushes the server keeps in flight
    max_frame: int
    v: int = 1


class Push(msgspec.Struct, frozen=True, tag="push", omit_defaults=True):
    id: int  # what the device acks
    apns_id: str
    token: str
    topic: str
    payload: msgspec.Raw
    priority: int = 10
    push_type: str = "alert"
    expiration: int | None = None
    collapse_id: str | None = None


class Batch(msgspec.Struct, frozen=True, tag="batch"):
    """A power burst (v2): the pushes of one wake-up, acked like single pushes."""

    pushes: list[Push]


class QuietSet(msgspec.Struct, frozen=True, tag="quiet_set", omit_defaults=True):
    """Answer to ``quiet``: the quiet hours now in force (none when cleared)."""

    rid: str = ""
    start: str | None = None
    end: str | None = None
    tz: str | None = None


class Registered(msgspec.Struct, frozen=True, tag="registered"):
    rid: str
    token: str
    topic: str
    environment: str


class Unregistered(msgspec.Struct, frozen=True, tag="unregistered"):
    rid: str
    token: str
    at_ms: int


class Error(msgspec.Struct, frozen=True, tag="error"):
    """A refused request; the socket stays open (fatal errors close instead)."""

    reason: str
    rid: str = ""
    message: str = ""


class Overflow(msgspec.Struct, frozen=True, tag="overflow"):
    """Notifications were dropped by the backlog cap: do a full sync."""

    dropped: int


class Reconnect(msgspec.Struct, frozen=True, tag="reconnect"):
    delay_ms: int


ServerFrame = Welcome | Push | Batch | QuietSet | Registered | Unregistered | Error | Overflow | Reconnect


class FrameError(ValueError):
    """The frame could not be decoded; the message says where."""


_client_decoder = msgspec.json.Decoder(ClientFrame)
_server_decoder = msgspec.json.Decoder(ServerFrame)
_encoder = msgspec.json.Encoder()


def decode_client(data: str | bytes) -> ClientFrame:
    try:
        return _client_decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise FrameError(str(exc)) from None


def decode_server(data: str | bytes) -> ServerFrame:
    try:
        return _server_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise FrameError(str(exc)) from None


def batch_frame(push_frames: list[bytes]) -> bytes:
    """Splice already-encoded ``push`` frames into one ``batch`` frame (no re-encoding)."""
    return b'{"type":"batch","pushes":[' + b",".join(push_frames) + b"]}"


def encode(frame: ClientFrame | ServerFrame) -> bytes:
    return _encoder.encode(frame)
