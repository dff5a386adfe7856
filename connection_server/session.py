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
    SetTimer(at_s)             call ``timer(now)`` at wall-clock time at_s (replaces
                               the previous timer)
    Admit(rows)                ask the store which of these rows may go out (background
                               budget, Live Activity order), then ``admitted(...)``
    SaveQuiet(rid, quiet)      store the device's quiet hours, then ``quiet_saved(...)``

Which pushes go out now and which wait (power window, sleep, quiet hours) is
decided by connection_server/power.py; the state those rules act on (what
waits, until when) is kept by connection_server/power_state.py, the base
class of ``Session``.  This module turns its answers into actions.

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
from connection_server.power import ADMITTED_TYPES, NO_HOLD, Mode, PowerPolicy, Verdict
from connection_server.power_state import Due, PowerState
from schemas.errors import BadRequestParams
from schemas.notification import StoredNotification
from schemas.quiet_hours import QuietHours

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


class SetTimer(msgspec.Struct, frozen=True):
    at_s: float


class Admit(msgspec.Struct, frozen=True):
    rows: tuple[StoredNotification, ...]


class SaveQuiet(msgspec.Struct, frozen=True):
    rid: str
    quiet: QuietHours | None


Action = Send | CloseConn | Authenticate | Drain | FlushAcks | IssueToken | RevokeToken | SetTimer | Admit | SaveQuiet
_FLUSH = FlushAcks()
#: A v2 ``batch`` frame stays below this size; a bigger burst is split into
#: several batch frames (written to the socket together).  v2 clients accept
#: frames up to 1 MiB (docs/protocol.md).
BATCH_MAX_BYTES = 512 * 1024


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


class Session(PowerState):
    __slots__ = (
        "_acks",
        "_cursor",
        "_drained_max",
        "_flushed_late",
        "_opened_at_s",
        "_outstanding",
        "_redrain",
        "_unflushed",
        "_want_drain",
        "bundle_id",
        "device_id",
        "epoch",
        "inflight",
        "phase",
        "version",
        "window",
    )

    def __init__(self, window: int, policy: PowerPolicy = NO_HOLD) -> None:
        super().__init__(policy)
        self.phase = Phase.AWAIT_HELLO
        self.window = window
        self.version = 1
        self.device_id = ""
        self.bundle_id = ""
        self.epoch = 0
        self.inflight: set[int] = set()  # sent, not acked
        self._unflushed: set[int] = set()  # acked, not yet committed by the store
        # Acks committed while a backlog read was in flight: that read may still
        # see those rows pending, so they stay filtered until it returns.
        self._flushed_late: list[int] | None = None
        self._acks: list[int] = []  # acked, waiting for the next flush
        self._cursor: tuple[int, int] | None = None  # (priority, id) of the last drained row
        # A bus push can arrive late (a busy router), after a backlog read already
        # sent its row and the ack was committed: then nothing in memory remembers
        # it.  Pushes of rows that may have gone out -- ids up to the highest one
        # drained or pushed, or rows committed before this connection opened (an
        # earlier connection may have drained them) -- are re-read from the store.
        self._drained_max = 0
        self._opened_at_s = 0.0
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
            if frame.v not in f.SUPPORTED_VERSIONS:
                return self._close(f.Close.UNSUPPORTED_VERSION, f"unsupported protocol version {frame.v}")
            self.phase = Phase.AUTHENTICATING
            self.version = frame.v
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
            # Awake means the radio is up anyway: everything held goes out now.
            return self.request_drain(Mode.P10_BURST) if self._report_awake(frame.awake) else []
        if isinstance(frame, f.Quiet):
            return self._set_quiet(frame)
        return self._close(f.Close.BAD_FRAME, "unexpected hello")

    def _set_quiet(self, frame: f.Quiet) -> list[Action]:
        if frame.start is None and frame.end is None and frame.tz is None:
            return [SaveQuiet(frame.rid, None)]
        if frame.start is None or frame.end is None or frame.tz is None:
            return self.request_failed(frame.rid, BadRequestParams.reason, "quiet needs start, end and tz")
        try:
            quiet = QuietHours.parse(frame.start, frame.end, frame.tz)
        except BadRequestParams as exc:
            return self.request_failed(frame.rid, exc.reason, exc.detail)
        return [SaveQuiet(frame.rid, quiet)]

    # -- results of the driver's I/O ---------------------------------------------

    def authenticated(
        self,
        bundle_id: str,
        epoch: int,
        heartbeat: float,
        max_frame: int,
        overflow: int,
        quiet: QuietHours | None = None,
        now_s: float = 0.0,
    ) -> list[Action]:
        if self.phase != Phase.AUTHENTICATING:
            return []
        self.phase = Phase.OPEN
        self._opened_at_s = now_s
        self.bundle_id = bundle_id
        self.epoch = epoch
        self._quiet_changed(quiet)
        welcome = f.Welcome(epoch=epoch, heartbeat=heartbeat, window=self.window, max_frame=max_frame, v=self.version)
        out: list[Action] = [Send(f.encode(welcome))]
        if overflow > 0:
            out.append(Send(f.encode(f.Overflow(dropped=overflow))))
        # Connecting woke the radio already: the backlog goes out as bursts.
        out.extend(self.request_drain(Mode.BURST))
        return out

    def quiet_saved(self, rid: str, quiet: QuietHours | None) -> list[Action]:
        """The device's quiet hours changed (its own frame, or the REST API when rid is None)."""
        if self.phase != Phase.OPEN:
            return []
        self._quiet_changed(quiet)
        out: list[Action] = []
        if rid:
            start, end = quiet.clock() if quiet is not None else (None, None)
            tz = quiet.tz if quiet is not None else None
            out.append(Send(f.encode(f.QuietSet(rid=rid, start=start, end=end, tz=tz))))
        out.extend(self.request_drain())  # alerts held by the old hours may be due now
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

    def push(self, n: StoredNotification, now_s: float) -> list[Action]:
        """A committed notification arrived on the bus (the doorbell)."""
        if self.phase != Phase.OPEN or n.id in self.inflight or n.id in self._unflushed:
            return []
        if n.id <= self._drained_max or n.accepted_at_ms < self._opened_at_s * 1000:
            # It may have gone out already (see __init__): the store knows.
            return self.request_drain()
        v = self._verdict(n, Mode.AUTO, now_s)
        if v != Verdict.SEND:
            return self._set_timer(self._hold({v}, now_s))
        if n.priority >= 10 and self._holding:
            # A priority-10 push takes the held ones along: one burst read from
            # the store (where this push is committed too), one socket write.
            return self.request_drain(Mode.P10_BURST)
        if len(self.inflight) >= self.window:
            # The row is in the store; re-read it once the window opens.
            return self.request_drain()
        self.inflight.add(n.id)
        # A second doorbell for this row (a re-ring of a resent apns-id, the route
        # repair) may come after its ack was committed: then it must be re-read.
        self._drained_max = max(self._drained_max, n.id)
        return self._emit([n])

    def request_drain(self, mode: Mode = Mode.AUTO) -> list[Action]:
        """Read the backlog again from the top (connect, resubscribe, doorbell, burst)."""
        if self.phase != Phase.OPEN:
            return []
        self._upgrade(mode)
        if self._outstanding:
            self._redrain = True
            return []
        self._want_drain = True
        self._cursor = None
        return self._next_drain()

    def drained(self, rows: Sequence[StoredNotification], limit: int, now_s: float) -> list[Action]:
        """A page of backlog (priority desc, id asc) answering a Drain action."""
        self._outstanding = False
        if self.phase != Phase.OPEN:
            return []
        fresh = [n for n in rows if n.id not in self.inflight and n.id not in self._unflushed]
        self._forget_late_acks()
        send, waiting = self._plan(fresh, now_s)
        mode = self._mode
        self.inflight.update(n.id for n in send)
        out = self._emit(send)
        if waiting:
            out.extend(self._set_timer(self._hold(waiting, now_s)))
        if rows:
            self._cursor = (rows[-1].priority, rows[-1].id)
            self._drained_max = max(self._drained_max, max(n.id for n in rows))
        # Pages come priority first: in an AUTO pass, once a page ends below
        # priority 10 nothing further could go out now.
        no_more_urgent = mode == Mode.AUTO and self.policy.holds and bool(rows) and rows[-1].priority < 10
        if self._redrain:
            self._redrain = False
            self._cursor = None
        elif len(rows) < limit or no_more_urgent:
            self._want_drain = False
            self._cursor = None
            self._mode = Mode.AUTO
        out.extend(self._next_drain())
        return out

    def drain_failed(self) -> list[Action]:
        """The store did not answer; the driver retries later via request_drain."""
        self._outstanding = False
        self._forget_late_acks()
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

    # -- power: the timer, admission -------------------------------------------------

    @staticmethod
    def _set_timer(due: Due) -> list[Action]:
        return [] if due is None else [SetTimer(due)]

    def timer(self, now_s: float) -> list[Action]:
        """The driver's timer fired: start the bursts that are due."""
        if not self._waiting or self.phase != Phase.OPEN:
            return []
        mode = self._due(now_s)
        out = self.request_drain(mode) if mode is not None else []
        out.extend(self._set_timer(self._rearm()))
        return out

    def _emit(self, rows: list[StoredNotification]) -> list[Action]:
        """Rows reserved in ``inflight`` go out as one burst, after admission if needed."""
        if not rows:
            return []
        if any(n.push_type in ADMITTED_TYPES for n in rows):
            return [Admit(tuple(rows))]
        return self._frames(rows)

    def admitted(self, rows: Sequence[StoredNotification], refused: set[int], retry_at_s: float | None) -> list[Action]:
        """The store's answer to Admit: refused rows are not sent (settled or waiting
        for the background budget, which frees at ``retry_at_s``)."""
        if self.phase != Phase.OPEN:
            return []
        self.inflight.difference_update(refused)
        out = self._frames([n for n in rows if n.id not in refused])
        if retry_at_s is not None:
            out.extend(self._set_timer(self._budget_retry(retry_at_s)))
        out.extend(self._next_drain())
        return out

    def admit_failed(self, rows: Sequence[StoredNotification]) -> list[Action]:
        """The store did not answer: the rows stay pending; the driver re-drains later."""
        self.inflight.difference_update(n.id for n in rows)
        return []

    def _frames(self, rows: list[StoredNotification]) -> list[Action]:
        frames = [push_frame(n) for n in rows]
        if self.version < 2 or len(frames) <= 1:
            # v1: consecutive push frames; the driver writes them to the socket at once.
            return [Send(data) for data in frames]
        out: list[Action] = []
        batch: list[bytes] = []
        size = 0
        for data in frames:
            if batch and size + len(data) > BATCH_MAX_BYTES:
                out.append(Send(f.batch_frame(batch)))
                batch, size = [], 0
            batch.append(data)
            size += len(data) + 1
        out.append(Send(f.batch_frame(batch) if len(batch) > 1 else batch[0]))
        return out

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
        if self._outstanding:
            # A backlog read that started before this commit may return these
            # rows as pending; forgetting them now would push them twice.
            if self._flushed_late is None:
                self._flushed_late = []
            self._flushed_late.extend(ids)
        else:
            self._unflushed.difference_update(ids)

    def _forget_late_acks(self) -> None:
        if self._flushed_late is not None:
            self._unflushed.difference_update(self._flushed_late)
            self._flushed_late = None

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
        self._forget_waits()

    def _close(self, code: int, reason: str) -> list[Action]:
        if self.phase >= Phase.CLOSING:
            return []
        self.phase = Phase.CLOSING
        # A close reason must fit a control frame (123 bytes of UTF-8).
        return [CloseConn(code, reason.encode()[:120].decode(errors="ignore"))]
