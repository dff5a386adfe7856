"""The device session as a state machine without I/O.

The driver (connection_server/server.py, or a unit test) feeds it events --
a raw frame, a timer, a committed push, a page of backlog, the result of a
store call -- and executes the actions it returns:

    Send(data)                 write one text frame
    CloseConn(code, reason)    close the socket
    Authenticate(id, secret)   store.authenticate_device + presence.claim, then
                               call ``authenticated(...)`` or ``auth_failed()``
    Drain(after, limit)        store.backlog(...), then ``drained(rows, limit)``
    FlushAcks()                acks are waiting: ``take_acks()`` soon
    IssueToken(rid, topic, env) / RevokeToken(rid, token)

States: AWAIT_HELLO -> AUTHENTICATING -> OPEN -> CLOSING -> CLOSED.

Memory: one object with ``__slots__`` per connection, no references back to
the driver, so it never takes part in a reference cycle (the collector has
nothing to traverse here; see docs/protocol.md "Server implementation").
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import msgspec

from connection_server import frames as f
from schemas.notification import StoredNotification

#: apns-topic suffixes a device may register besides its bare bundle id (APNS.md section 2).
TOPIC_SUFFIXES = (
    ".voip",
    ".voip-ptt",
    ".complication",
    ".location-query",
    ".pushkit.fileprovider",
    ".push-type.controls",
    ".push-type.liveactivity",
    ".push-type.widgets",
)


def topic_allowed(topic: str, bundle_id: str) -> bool:
    if topic == bundle_id:
        return True
    return topic.startswith(bundle_id) and topic[len(bundle_id) :] in TOPIC_SUFFIXES


class Phase(enum.IntEnum):
    AWAIT_HELLO = 0
    AUTHENTICATING = 1
    OPEN = 2
    CLOSING = 3
    CLOSED = 4


# --- actions --------------------------------------------------------------------


class Send(msgspec.Struct, frozen=True):
    data: bytes


class CloseConn(msgspec.Struct, frozen=True):
    code: int
    reason: str


class Authenticate(msgspec.Struct, frozen=True):
    device_id: str
    secret: str


class Drain(msgspec.Struct, frozen=True):
    after: tuple[int, int] | None
    limit: int


class FlushAcks(msgspec.Struct, frozen=True):
    pass


class IssueToken(msgspec.Struct, frozen=True):
    rid: str
    topic: str
    environment: str


class RevokeToken(msgspec.Struct, frozen=True):
    rid: str
    token: str


Action = Send | CloseConn | Authenticate | Drain | FlushAcks | IssueToken | RevokeToken
_FLUSH = FlushAcks()


def push_frame(n: StoredNotification) -> bytes:
    return f.encode(
        f.Push(
            id=n.id,
            apns_id=n.apns_id,
            token=n.token,
            topic=n.topic,
            payload=msgspec.Raw(n.payload),
            priority=n.priority,
            push_type=n.push_type,
            expiration=n.expiration,
            collapse_id=n.collapse_id,
        )
    )


class Session:
    __slots__ = (
        "_acks",
        "_cursor",
        "_outstanding",
        "_redrain",
        "_unflushed",
        "_want_drain",
        "awake",
        "bundle_id",
        "device_id",
        "epoch",
        "inflight",
        "phase",
        "window",
    )

    def __init__(self, window: int) -> None:
        self.phase = Phase.AWAIT_HELLO
        self.window = window
        self.device_id = ""
        self.bundle_id = ""
        self.epoch = 0
        self.awake = True
        self.inflight: set[int] = set()  # sent, not acked
        self._unflushed: set[int] = set()  # acked, not yet committed by the store
        self._acks: list[int] = []  # acked, waiting for the next flush
        self._cursor: tuple[int, int] | None = None  # (priority, id) of the last drained row
        self._want_drain = False
        self._outstanding = False  # a Drain action is being executed
        self._redrain = False  # restart from the top when the current page returns

    # -- inbound frames --------------------------------------------------------

    def receive(self, data: str | bytes) -> list[Action]:
        if self.phase >= Phase.CLOSING:
            return []
        try:
            frame = f.decode_client(data)
        except f.FrameError as exc:
            return self._close(f.Close.BAD_FRAME, f"bad frame: {exc}")
        if self.phase == Phase.AWAIT_HELLO:
            if not isinstance(frame, f.Hello):
                return self._close(f.Close.BAD_FRAME, "expected hello")
            if frame.v != f.PROTOCOL_VERSION:
                return self._close(f.Close.UNSUPPORTED_VERSION, f"unsupported protocol version {frame.v}")
            self.phase = Phase.AUTHENTICATING
            self.device_id = frame.device_id
            self.awake = frame.awake
            return [Authenticate(frame.device_id, frame.secret)]
        if self.phase != Phase.OPEN:
            return self._close(f.Close.BAD_FRAME, "frame before welcome")
        if isinstance(frame, f.Ack):
            return self._ack(frame.ids)
        if isinstance(frame, f.Register):
            if not topic_allowed(frame.topic, self.bundle_id):
                return [Send(f.encode(f.Error(reason="TopicDisallowed", rid=frame.rid, message=frame.topic)))]
            return [IssueToken(frame.rid, frame.topic, frame.environment)]
        if isinstance(frame, f.Unregister):
            return [RevokeToken(frame.rid, frame.token)]
        if isinstance(frame, f.State):
            woke = frame.awake and not self.awake
            self.awake = frame.awake
            return self.request_drain() if woke else []
        return self._close(f.Close.BAD_FRAME, "unexpected hello")

    # -- results of the driver's I/O ---------------------------------------------

    def authenticated(
        self, bundle_id: str, epoch: int, heartbeat: float, max_frame: int, overflow: int
    ) -> list[Action]:
        if self.phase != Phase.AUTHENTICATING:
            return []
        self.phase = Phase.OPEN
        self.bundle_id = bundle_id
        self.epoch = epoch
        out: list[Action] = [
            Send(f.encode(f.Welcome(epoch=epoch, heartbeat=heartbeat, window=self.window, max_frame=max_frame)))
        ]
        if overflow > 0:
            out.append(Send(f.encode(f.Overflow(dropped=overflow))))
        out.extend(self.request_drain())
        return out

    def auth_failed(self) -> list[Action]:
        return self._close(f.Close.BAD_CREDENTIAL, "bad credential")

    def registered(self, rid: str, token: str, topic: str, environment: str) -> list[Action]:
        if self.phase != Phase.OPEN:
            return []
        return [Send(f.encode(f.Registered(rid=rid, token=token, topic=topic, environment=environment)))]

    def unregistered(self, rid: str, token: str, at_ms: int) -> list[Action]:
        if self.phase != Phase.OPEN:
            return []
        return [Send(f.encode(f.Unregistered(rid=rid, token=token, at_ms=at_ms)))]

    def request_failed(self, rid: str, reason: str, message: str = "") -> list[Action]:
        if self.phase != Phase.OPEN:
            return []
        return [Send(f.encode(f.Error(reason=reason, rid=rid, message=message)))]

    # -- delivery ------------------------------------------------------------------

    def push(self, n: StoredNotification, now_s: int) -> list[Action]:
        """A committed notification arrived on the bus (the doorbell)."""
        if self.phase != Phase.OPEN or n.id in self.inflight or n.id in self._unflushed:
            return []
        if n.expiration and n.expiration < now_s:
            return []
        if n.priority == 1 and not self.awake:
            return []  # stays pending; drained when the device says it is awake
        if len(self.inflight) >= self.window:
            # The row is in the store; re-read it once the window opens.
            return self.request_drain()
        self.inflight.add(n.id)
        return [Send(push_frame(n))]

    def request_drain(self) -> list[Action]:
        """Read the backlog again from the top (connect, resubscribe, doorbell)."""
        if self.phase != Phase.OPEN:
            return []
        if self._outstanding:
            self._redrain = True
            return []
        self._want_drain = True
        self._cursor = None
        return self._next_drain()

    def drained(self, rows: Sequence[StoredNotification], limit: int, now_s: int) -> list[Action]:
        """A page of backlog (priority desc, id asc) answering a Drain action."""
        self._outstanding = False
        if self.phase != Phase.OPEN:
            return []
        out: list[Action] = []
        for n in rows:
            if n.id in self.inflight or n.id in self._unflushed:
                continue
            if (n.expiration and n.expiration < now_s) or (n.priority == 1 and not self.awake):
                continue
            self.inflight.add(n.id)
            out.append(Send(push_frame(n)))
        if rows:
            self._cursor = (rows[-1].priority, rows[-1].id)
        if self._redrain:
            self._redrain = False
            self._cursor = None
        elif len(rows) < limit:
            self._want_drain = False
            self._cursor = None
        out.extend(self._next_drain())
        return out

    def drain_failed(self) -> list[Action]:
        """The store did not answer; the driver retries later via request_drain."""
        self._outstanding = False
        self._want_drain = True
        self._cursor = None
        return []

    def _next_drain(self) -> list[Action]:
        if not self._want_drain or self._outstanding:
            return []
        free = self.window - len(self.inflight)
        if free <= 0:
            return []
        self._outstanding = True
        return [Drain(self._cursor, free)]

    @property
    def draining(self) -> bool:
        return self._want_drain

    # -- acks ----------------------------------------------------------------------

    def _ack(self, ids: list[int]) -> list[Action]:
        if not ids:
            return []
        had = bool(self._acks)
        for i in ids:
            # Ids from an earlier connection are passed on too: the store only
            # marks pending rows of this device, so a stale ack is harmless.
            self.inflight.discard(i)
            self._unflushed.add(i)
            self._acks.append(i)
        out: list[Action] = [] if had else [_FLUSH]
        out.extend(self._next_drain())
        return out

    def take_acks(self) -> list[int]:
        acks, self._acks = self._acks, []
        return acks

    def acks_flushed(self, ids: Sequence[int]) -> None:
        self._unflushed.difference_update(ids)

    def acks_failed(self, ids: Sequence[int]) -> list[Action]:
        had = bool(self._acks)
        self._acks.extend(ids)
        return [] if had else [_FLUSH]

    # -- control ---------------------------------------------------------------------

    def hello_timeout(self) -> list[Action]:
        if self.phase in (Phase.AWAIT_HELLO, Phase.AUTHENTICATING):
            return self._close(f.Close.HELLO_TIMEOUT, "hello timeout")
        return []

    def kick(self, epoch: int) -> list[Action]:
        """A newer connection of this device claimed presence with ``epoch``."""
        if self.epoch < epoch:
            return self._close(f.Close.REPLACED, "replaced by a newer connection")
        return []

    def refuse(self, reason: str) -> list[Action]:
        """A frame the driver rejected before decoding (a binary frame)."""
        return self._close(f.Close.BAD_FRAME, reason)

    def too_slow(self) -> list[Action]:
        return self._close(f.Close.TOO_SLOW, "too slow")

    def shutdown(self, delay_ms: int) -> list[Action]:
        if self.phase >= Phase.CLOSING:
            return []
        out: list[Action] = []
        if self.phase == Phase.OPEN:
            out.append(Send(f.encode(f.Reconnect(delay_ms=delay_ms))))
        out.extend(self._close(f.Close.SERVICE_RESTART, "server restart"))
        return out

    def fail(self, reason: str) -> list[Action]:
        return self._close(f.Close.INTERNAL, reason)

    def closed(self) -> None:
        self.phase = Phase.CLOSED
        self.inflight.clear()

    def _close(self, code: int, reason: str) -> list[Action]:
        if self.phase >= Phase.CLOSING:
            return []
        self.phase = Phase.CLOSING
        # A close reason must fit a control frame (123 bytes of UTF-8).
        return [CloseConn(code, reason.encode()[:120].decode(errors="ignore"))]
