"""Server side of one APNs-style HTTP/2 connection, without I/O.

``H2ServerConnection`` wraps an ``h2`` connection and turns bytes into
complete requests and responses into bytes; ``h2_server`` feeds it from an
``asyncio.Protocol``.  What it adds on top of h2:

* **Stream admission is ours.**  h2 treats a stream over the local
  ``MAX_CONCURRENT_STREAMS`` as a *connection* error and tears the whole
  connection down.  Apple advertises 1 stream until the first request with
  a valid provider token, and clients such as aioapns open several streams
  before they have read our SETTINGS, so a hard failure would break them.
  We therefore keep h2's own check out of the way (see ``_AdmissionFreeH2``)
  and refuse surplus streams with ``RST_STREAM(REFUSED_STREAM)`` (RFC 9113
  5.1.2) — but only once the peer has acknowledged the limit it broke.
  Before authentication, requests are *processed* one at a time whatever
  the peer did, so "one stream until a valid token" holds for the work done.
* **Bounded input.**  ``MAX_HEADER_LIST_SIZE`` is advertised and enforced by
  h2's HPACK decoder; bodies are buffered only up to ``max_body`` bytes
  (or a larger ``content-length`` is seen), then answered 413
  ``PayloadTooLarge`` and the stream is reset.
* **Bounded work.**  A stream reset by the peer while its request is being
  handled keeps its slot until the handler ends, and so does an answer held
  back by a closed flow-control window; a peer that resets more than
  ``RESET_BUDGET`` requests and more than it lets us answer (rapid reset,
  CVE-2023-44487) gets GOAWAY(ENHANCE_YOUR_CALM).
* **Flow control.**  Received DATA is acknowledged at once (the body is
  bounded, so the window can be reopened safely); response bodies wait for
  ``WindowUpdated`` when the peer's window is closed.
* **Graceful drain.**  h2 cannot send a graceful GOAWAY (shared/LIBRARIES.md
  section 3: sending GOAWAY closes its state machine), so ``begin_drain``
  advertises ``MAX_CONCURRENT_STREAMS=0`` and refuses new streams; the glue
  waits until ``idle`` and then calls ``goaway`` with the last stream id.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Any

import orjson
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RequestReceived,
    SettingsAcknowledged,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from hpack import Encoder

from provider_api import frame_speedups
from provider_api.hpack_decoder import FastDecoder
from provider_api.submit import new_apns_id
from schemas.errors import PayloadTooLarge, PushgwError

MAX_HEADER_LIST_SIZE = 8000  # what Apple advertises (shared/APNS.md section 6)
#: Requests the peer may reset mid-flight before resets must stay below answers
#: (rapid reset, CVE-2023-44487): past it the connection gets ENHANCE_YOUR_CALM.
RESET_BUDGET = 100
JSON_CT = (b"content-type", b"application/json")
_STATUS = {code: (b":status", str(code).encode()) for code in (200, 400, 403, 404, 405, 410, 413, 429, 500, 503)}
# Request pseudo-headers (RFC 9113 8.3.1); all but :authority are required.
_PSEUDO = frozenset((b":method", b":scheme", b":path", b":authority"))


_OK_STATUS = (b":status", b"200")
# ":status: 200" is HPACK static entry 8 (0x88); then apns-id as a literal
# without indexing, with a literal name (RFC 7541 6.2.2: 0x00, length, name).
_OK_PREFIX = b"\x88\x00\x07apns-id"


frame_speedups.install()  # cheaper frame repr and flag sets (see the module)


class _AnswerEncoder(Encoder):
    """hpack's encoder with a fast path for the answer almost every request gets.

    ``200`` + ``apns-id`` is encoded as two fixed bytes plus the id as a plain
    literal that is never added to the dynamic table: the id is unique per
    request, so indexing it only churned the table, and Huffman-coding it cost
    more than the ~10 bytes it saves.  The encoder's dynamic table is left
    untouched, so the peer's decoder stays in step.  Anything else (errors, a
    pending table size update) goes through hpack as before.
    """

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        if (
            len(headers) == 2
            and headers[0] == _OK_STATUS
            and headers[1][0] == b"apns-id"
            and len(headers[1][1]) < 127
            and not self.header_table.resized
        ):
            value = headers[1][1]
            return _OK_PREFIX + bytes((len(value),)) + value
        return super().encode(headers, huffman)


class _AdmissionFreeH2(H2Connection):
    """h2 without its fatal inbound stream limit (we refuse streams ourselves)."""

    _prune_every = 64
    _calls = 0

    @property
    def open_inbound_streams(self) -> int:
        # Reporting 0 disables the TooManyStreamsError connection error in
        # _receive_headers_frame.  The parent's accessor also prunes closed
        # streams from ``streams`` by walking all of them, which h2 does on
        # every HEADERS frame (O(open streams) per request); pruning every
        # 64th call keeps memory bounded at a fraction of the cost.
        self._calls += 1
        if self._calls >= self._prune_every:
            self._calls = 0
            super().open_inbound_streams  # noqa: B018
        return 0


@dataclass(slots=True)
class Request:
    """One complete request, ready for the handler."""

    stream_id: int
    method: str
    path: str
    authority: str
    headers: list[tuple[str, str]]  # regular headers, lowercase names, in order
    body: bytes = b""


@dataclass(slots=True)
class _Stream:
    request: Request
    body: bytearray = field(default_factory=bytearray)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def error_body(exc: PushgwError) -> bytes:
    return orjson.dumps(exc.body())


def echo_id(raw: str | None) -> str:
    """The apns-id to answer with: the request's if it is a lowercase UUID, else a new one."""
    if raw is not None and _UUID.fullmatch(raw):
        return raw
    return new_apns_id()


class H2ServerConnection:
    """HTTP/2 server connection logic: bytes in, requests out, responses in, bytes out."""

    def __init__(self, *, max_streams: int, max_body: int, max_header_list: int = MAX_HEADER_LIST_SIZE) -> None:
        self.max_streams = max_streams
        self.max_body = max_body
        # Our own response headers are well-formed lowercase bytes: h2's outbound
        # validation and normalisation would only re-check them per response.
        # h2's inbound validation (a chain of ten generators per request, ~15% of
        # the CPU under load) is replaced by ``_malformed`` below, which checks
        # what this endpoint relies on; everything else in a request is checked
        # by schemas.apns or ignored (cookies, te, host).
        config = H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self.h2 = _AdmissionFreeH2(config)
        self.h2.encoder = _AnswerEncoder()
        self.h2.decoder = FastDecoder(max_header_list_size=max_header_list)
        self._max_header_list = max_header_list
        self._advertised = 1
        self.authenticated = False
        self.draining = False
        self.closed = False
        self._limit = max_streams  # enforced limit; the peer may not know a lower one yet
        self._streams: dict[int, _Stream] = {}  # received, not yet answered
        self._waiting: collections.deque[Request] = collections.deque()  # complete, not dispatched
        self._dispatched = 0
        self._outbound: dict[int, bytes] = {}  # response bodies blocked by flow control
        self._running: set[int] = set()  # dispatched, not yet answered
        self._orphaned: set[int] = set()  # dispatched, then reset by the peer: the work still runs
        self._peer_resets = 0
        self._answered = 0
        self.last_stream_id = 0  # highest stream whose request we took

    # -- lifecycle -----------------------------------------------------------
    def initiate(self) -> None:
        # One SETTINGS frame with our real values (h2 sends local_settings).
        self.h2.local_settings = Settings(
            client=False,
            initial_values={
                SettingCodes.MAX_CONCURRENT_STREAMS: 1,
                SettingCodes.MAX_HEADER_LIST_SIZE: self._max_header_list,
                SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self.h2.decoder.max_header_list_size = self._max_header_list
        self.h2.initiate_connection()

    def mark_authenticated(self) -> None:
        """The first valid provider token arrived: open up to ``max_streams``."""
        if self.authenticated:
            return
        self.authenticated = True
        if not self.draining:
            self._limit = self._advertised = self.max_streams
            self.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams})

    def begin_drain(self) -> None:
        if self.draining or self.closed:
            return
        self.draining = True
        self._advertised = 0
        self.h2.update_settings({SettingCodes.MAX_CONCURRENT_STREAMS: 0})

    @property
    def idle(self) -> bool:
        return not self._streams and not self._waiting and not self._outbound

    def goaway(self) -> None:
        if not self.closed:
            self.closed = True
            self.h2.close_connection(error_code=ErrorCodes.NO_ERROR, last_stream_id=self.last_stream_id)

    def data_to_send(self) -> bytes:
        return self.h2.data_to_send()

    # -- input ---------------------------------------------------------------
    def receive(self, data: bytes) -> list[Request]:
        """Feed bytes; return requests that may be handled now.

        Raises ``h2.exceptions.ProtocolError`` on a connection error (h2 has
        then queued a GOAWAY; flush and close).
        """
        try:
            events = self.h2.receive_data(data)
        except ProtocolError:
            self.closed = True
            raise
        for event in events:
            self._on_event(event)
        return self._pump()

    def take_ready(self) -> list[Request]:
        """Requests released by a state change (e.g. ``mark_authenticated``)."""
        return self._pump()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._on_request(event)
        elif isinstance(event, DataReceived):
            self._on_data(event)
        elif isinstance(event, StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.request.body = bytes(stream.body)
                self._waiting.append(stream.request)
        elif isinstance(event, StreamReset):
            self._on_reset(event.stream_id)
        elif isinstance(event, WindowUpdated):
            self._flush_outbound()
        elif isinstance(event, SettingsAcknowledged):
            # The peer now knows our advertised limit; from here on a stream
            # beyond it is the peer's fault and gets REFUSED_STREAM.
            if not self.authenticated or self.draining:
                self._limit = min(self._limit, self._advertised)
        elif isinstance(event, ConnectionTerminated):
            self.closed = True

    def _on_request(self, event: RequestReceived) -> None:
        sid = event.stream_id
        assert sid is not None
        # Streams whose work or answer is still pending count against the
        # limit: reset-but-running handlers (rapid reset) and answers held
        # back by a closed flow-control window (a peer that never reads).
        busy = len(self._streams) + len(self._orphaned) + len(self._outbound)
        if self.draining or busy >= self._limit:
            self._reset(sid, ErrorCodes.REFUSED_STREAM)
            return
        pseudo: dict[bytes, bytes] = {}
        headers: list[tuple[str, str]] = []
        length: int | None = None
        malformed = False
        for name, value in event.headers or ():
            if name[:1] == b":":
                # Pseudo-headers: known ones, once each, before regular headers.
                malformed |= name not in _PSEUDO or name in pseudo or bool(headers)
                pseudo[name] = value
                continue
            malformed |= name.lower() != name or not name
            text = value.decode("utf-8", "replace")
            headers.append((name.decode("ascii", "replace"), text))
            if name == b"content-length" and text.isdigit():
                length = int(text)
        self.last_stream_id = max(self.last_stream_id, sid)
        if malformed or len(pseudo) != len(_PSEUDO) - (b":authority" not in pseudo):
            # RFC 9113 8.1.1: a malformed request is a stream error of type
            # PROTOCOL_ERROR (h2's own validation would end the connection).
            self._reset(sid, ErrorCodes.PROTOCOL_ERROR)
            return
        request = Request(
            stream_id=sid,
            method=pseudo.get(b":method", b"").decode("ascii", "replace"),
            path=pseudo.get(b":path", b"").decode("utf-8", "replace"),
            authority=pseudo.get(b":authority", b"").decode("ascii", "replace"),
            headers=headers,
        )
        self._streams[sid] = _Stream(request)
        if length is not None and length > self.max_body:
            self._too_large(sid)

    def _on_data(self, event: DataReceived) -> None:
        sid = event.stream_id
        assert sid is not None
        if event.flow_controlled_length:
            # Bodies are bounded below, so reopening the window at once is safe.
            try:
                self.h2.acknowledge_received_data(event.flow_controlled_length, sid)
            except StreamClosedError:
                pass
        stream = self._streams.get(sid)
        if stream is None:
            return
        stream.body += event.data or b""
        if len(stream.body) > self.max_body:
            self._too_large(sid)

    def _on_reset(self, sid: int | None) -> None:
        if sid is None:
            return
        if sid in self._streams:
            self._peer_resets += 1
            if sid in self._running:
                self._orphaned.add(sid)
        self._forget(sid)
        if self._peer_resets > RESET_BUDGET and self._peer_resets > self._answered and not self.closed:
            self.closed = True
            self.h2.close_connection(error_code=ErrorCodes.ENHANCE_YOUR_CALM, last_stream_id=self.last_stream_id)

    def _too_large(self, sid: int) -> None:
        stream = self._streams[sid]
        apns_id = echo_id(_header(stream.request.headers, "apns-id"))
        exc = PayloadTooLarge()
        self._forget(sid)
        self._send(sid, exc.status, apns_id, error_body(exc), track=False)
        # Tell the peer to stop sending the rest of the body (RFC 9113 8.1).
        self._reset(sid, ErrorCodes.NO_ERROR)

    def _pump(self) -> list[Request]:
        """Dispatch waiting requests: all if authenticated, else one at a time."""
        ready: list[Request] = []
        while self._waiting and (self.authenticated or self._dispatched == 0):
            request = self._waiting.popleft()
            ready.append(request)
            self._running.add(request.stream_id)
            self._dispatched += 1
        return ready

    # -- output --------------------------------------------------------------
    def respond(self, stream_id: int, status: int, apns_id: str, body: bytes = b"") -> list[Request]:
        """Answer a dispatched request; returns requests released by it."""
        self._dispatched -= 1
        self._running.discard(stream_id)
        self._orphaned.discard(stream_id)
        if self._streams.pop(stream_id, None) is not None and not self.closed:
            self._answered += 1
            self._send(stream_id, status, apns_id, body, track=True)
        return self._pump()

    def _send(self, sid: int, status: int, apns_id: str | None, body: bytes, *, track: bool) -> None:
        headers = [_STATUS.get(status) or (b":status", str(status).encode())]
        if apns_id:
            headers.append((b"apns-id", apns_id.encode()))
        if body:
            headers.append(JSON_CT)
            headers.append((b"content-length", str(len(body)).encode()))
        try:
            self.h2.send_headers(sid, headers, end_stream=not body)
            if body:
                self._outbound[sid] = body
                self._flush_outbound()
        except (StreamClosedError, ProtocolError):
            # The peer reset or closed the stream meanwhile: nothing to answer.
            self._outbound.pop(sid, None)

    def _flush_outbound(self) -> None:
        for sid in list(self._outbound):
            body = self._outbound[sid]
            try:
                window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                if window <= 0:
                    continue
                chunk, rest = body[:window], body[window:]
                self.h2.send_data(sid, chunk, end_stream=not rest)
            except (StreamClosedError, ProtocolError):
                self._outbound.pop(sid, None)
                continue
            if rest:
                self._outbound[sid] = rest
            else:
                del self._outbound[sid]

    def _forget(self, sid: int) -> None:
        self._streams.pop(sid, None)
        self._outbound.pop(sid, None)
        for i, req in enumerate(self._waiting):
            if req.stream_id == sid:
                del self._waiting[i]
                break

    def _reset(self, sid: int, code: ErrorCodes) -> None:
        try:
            self.h2.reset_stream(sid, error_code=code)
        except (StreamClosedError, ProtocolError):
            pass

    def is_live(self, stream_id: int) -> bool:
        """False when the peer reset the stream while its request was handled."""
        return stream_id in self._streams


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value
    return None
