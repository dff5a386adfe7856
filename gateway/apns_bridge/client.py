"""One HTTP/2 connection to Apple: h2 (sans-IO) driven by an asyncio.Protocol.

What the libraries get wrong and this module does on purpose
(shared/LIBRARIES.md section 3):

* stream state is popped on *every* end: response, reset, deadline, loss;
* ``SETTINGS_MAX_CONCURRENT_STREAMS`` is read live (Apple changes it), and
  the pool never opens a stream without a free slot;
* DATA is sent only inside the peer's flow-control window, waiting for
  ``WindowUpdated`` when it is exhausted;
* GOAWAY is intercepted *before* h2 sees it, because h2 closes its state
  machine on GOAWAY and then cannot read the answers to the streams the
  server promised to finish (h2 issue 1181).  Streams above
  ``last_stream_id`` were never processed and fail with ``StreamRefused``
  (safe to send again at once); streams at or below it still get their
  answers; if the socket dies first their outcome is unknown
  (``OutcomeUnknown``), which the sender does not resend blindly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack
from h2.errors import ErrorCodes

Header = tuple[bytes, bytes]
# A request header; a third item True sends it as a never-indexed HPACK literal.
RequestHeader = tuple[bytes, bytes] | tuple[bytes, bytes, bool]
_GOAWAY = 0x7


class BridgeError(Exception):
    """A request that got no answer from Apple."""


class StreamRefused(BridgeError):
    """Apple certainly did not process the request: send it again now."""


class OutcomeUnknown(BridgeError):
    """The request may or may not have reached Apple (timeout, reset, loss)."""


@dataclass(frozen=True, slots=True)
class APNsResponse:
    status: int
    apns_id: str | None = None
    unique_id: str | None = None  # apns-unique-id, sandbox only
    reason: str | None = None
    timestamp_ms: int | None = None  # 410 only


@dataclass(slots=True)
class _Stream:
    future: asyncio.Future[APNsResponse]
    headers: list[Header] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)


def parse_response(headers: Sequence[Header], body: bytes) -> APNsResponse:
    """Apple's answer from its response headers and (error) body; pure."""
    status = 0
    apns_id = unique_id = reason = None
    for name, value in headers:
        if name == b":status":
            status = int(value)
        elif name == b"apns-id":
            apns_id = value.decode()
        elif name == b"apns-unique-id":
            unique_id = value.decode()
    timestamp = None
    if body:
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            r = doc.get("reason")
            reason = r if isinstance(r, str) else None
            ts = doc.get("timestamp")
            timestamp = int(ts) if isinstance(ts, int | float) else None
    return APNsResponse(status=status, apns_id=apns_id, unique_id=unique_id, reason=reason, timestamp_ms=timestamp)


class _PlainEncoder(hpack.Encoder):
    """HPACK without Huffman coding: the per-character Huffman loop in pure
    Python cost more CPU than the ~25% of header bytes it saves on the few
    literals we send per request (apns-id and path; the rest is indexed)."""

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        return super().encode(headers, huffman=False)


class _LeanH2Connection(h2.connection.H2Connection):
    """h2 with an O(1) amortised open-stream count.

    h2 counts open streams by scanning every stream it knows on each new
    stream (``_open_streams``, which also purges closed ones): quadratic with
    hundreds of concurrent streams, and the largest single CPU cost of the
    client at its stream limits.  The pool never opens more streams than the
    peer allows (``APNsConnection.capacity``), so the check can use our own
    count of live streams; the scan still runs, but only after the stream
    map doubled since the last one, so closed streams are purged
    (bounded memory) at O(1) amortised cost.
    """

    live_streams = 0
    _scan_at = 64

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config)
        self.encoder = _PlainEncoder()

    @property
    def open_outbound_streams(self) -> int:
        if len(self.streams) >= self._scan_at:
            count = self._open_streams(int(self.config.client_side))
            self._scan_at = 2 * len(self.streams) + 64
            return count
        return self.live_streams


class APNsConnection(asyncio.Protocol):
    """A client connection; create with ``await APNsConnection.open(...)``."""

    def __init__(self, *, max_streams_cap: int = 1000, on_change: Callable[[], None] | None = None) -> None:
        cfg = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            # We build the request headers ourselves, already lowercase and
            # valid; outbound validation is a large share of h2's CPU cost.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            # Apple's answers carry three or four headers we read by name;
            # h2's generic inbound checks were ~10% of the client's CPU.
            validate_inbound_headers=False,
            normalize_inbound_headers=False,
        )
        self._h2 = _LeanH2Connection(cfg)
        self._cap = max_streams_cap
        self._limit = min(self._h2.remote_settings.max_concurrent_streams, max_streams_cap)
        self._on_change = on_change or (lambda: None)
        self._transport: asyncio.Transport | None = None
        self._streams: dict[int, _Stream] = {}
        self._inbuf = bytearray()
        self._window_waiters: list[asyncio.Future[None]] = []
        self._settings_received = asyncio.Event()
        self._closed = asyncio.Event()
        self._ping_waiter: asyncio.Future[None] | None = None
        self._ping_task: asyncio.Task[None] | None = None
        self._flush_scheduled = False
        self.goaway_last_id: int | None = None
        self.goaway_reason: str | None = None
        self.last_activity = time.monotonic()
        self.requests = 0

    # -- opening -------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        ssl_ctx: ssl.SSLContext | None,
        *,
        server_hostname: str | None = None,
        timeout: float = 10.0,
        max_streams_cap: int = 1000,
        ping_interval_s: float = 60.0,
        on_change: Callable[[], None] | None = None,
    ) -> APNsConnection:
        loop = asyncio.get_running_loop()
        proto = cls(max_streams_cap=max_streams_cap, on_change=on_change)
        try:
            async with asyncio.timeout(timeout):
                await loop.create_connection(
                    lambda: proto, host, port, ssl=ssl_ctx, server_hostname=server_hostname if ssl_ctx else None
                )
                if ssl_ctx is not None:
                    sslobj = proto._transport.get_extra_info("ssl_object") if proto._transport else None
                    if sslobj is None or sslobj.selected_alpn_protocol() != "h2":
                        proto.abort()
                        raise StreamRefused(f"{host}:{port} did not negotiate ALPN h2")
                # Apple's first SETTINGS tells us how many streams we may open.
                await proto._settings_received.wait()
                if proto._closed.is_set():
                    # E.g. the server refused our client certificate (TLS 1.3 says so after the handshake).
                    raise StreamRefused(f"{host}:{port} closed the connection during setup")
        except (OSError, TimeoutError) as exc:
            proto.abort()
            raise StreamRefused(f"cannot connect to {host}:{port}: {exc!r}") from exc
        if ping_interval_s > 0:
            proto._ping_task = loop.create_task(proto._keepalive(ping_interval_s))
        return proto

    # -- state ---------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self._transport is not None and not self._closed.is_set() and self.goaway_last_id is None

    @property
    def in_flight(self) -> int:
        return len(self._streams)

    @property
    def capacity(self) -> int:
        """Streams we may still open now (live SETTINGS, capped locally)."""
        if not self.usable:
            return 0
        return max(0, self._limit - len(self._streams))

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def close(self) -> None:
        """Polite close: GOAWAY(NO_ERROR) then FIN; in-flight requests fail."""
        if self._transport is not None and not self._closed.is_set():
            with contextlib.suppress(h2.exceptions.ProtocolError):
                self._h2.close_connection()
                self._flush()
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # -- requests ------------------------------------------------------------

    async def send(self, headers: list[RequestHeader], body: bytes, timeout: float) -> APNsResponse:
        """One request; the caller (the pool) checked ``capacity`` first."""
        if not self.usable:
            raise StreamRefused("connection is closing")
        loop = asyncio.get_running_loop()
        stream_id = self._h2.get_next_available_stream_id()
        self._h2.live_streams = len(self._streams)
        try:
            self._h2.send_headers(stream_id, headers, end_stream=not body)  # type: ignore[arg-type]  # 3-tuples: hpack takes them
        except h2.exceptions.TooManyStreamsError as exc:
            raise StreamRefused("no stream slot") from exc
        stream = _Stream(loop.create_future())
        self._streams[stream_id] = stream
        self.requests += 1
        self._flush_soon()
        # A plain timer, not asyncio.timeout(): the context manager's
        # bookkeeping was ~5% of the client's CPU at thousands of requests/s.
        timer = loop.call_later(timeout, self._expire, stream_id, timeout)
        try:
            if body:
                await self._send_body(stream_id, stream, body)
            return await stream.future
        except asyncio.CancelledError:
            self._reset(stream_id)
            raise
        finally:
            timer.cancel()
            if self._streams.pop(stream_id, None) is not None:
                self._on_change()

    def _expire(self, stream_id: int, timeout: float) -> None:
        """The deadline passed: free the slot now; the answer, if it comes, is discarded."""
        stream = self._streams.get(stream_id)
        if stream is None or stream.future.done():
            return
        stream.future.set_exception(OutcomeUnknown(f"no answer within {timeout:.1f}s"))
        self._reset(stream_id)
        self._wake_window_waiters()  # a body still waiting for window gives up

    def _wake_window_waiters(self) -> None:
        for waiter in self._window_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._window_waiters.clear()

    async def _send_body(self, stream_id: int, stream: _Stream, body: bytes) -> None:
        view = memoryview(body)
        while view:
            if stream.future.done():
                return  # expired or failed: the caller reads why from the future
            if stream_id not in self._streams:
                raise self._failure_for(stream_id)
            window = min(self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size)
            if window <= 0:
                waiter = asyncio.get_running_loop().create_future()
                self._window_waiters.append(waiter)
                await waiter
                continue
            chunk, view = view[:window], view[window:]
            self._h2.send_data(stream_id, bytes(chunk), end_stream=not view)
            self._flush_soon()

    def _reset(self, stream_id: int) -> None:
        if self._streams.pop(stream_id, None) is None:
            return
        with contextlib.suppress(h2.exceptions.ProtocolError, h2.exceptions.StreamClosedError):
            self._h2.reset_stream(stream_id, ErrorCodes.CANCEL)
            self._flush()
        self._on_change()

    def _failure_for(self, stream_id: int) -> BridgeError:
        if self.goaway_last_id is not None and stream_id > self.goaway_last_id:
            return StreamRefused(f"GOAWAY last_stream_id={self.goaway_last_id} ({self.goaway_reason})")
        return OutcomeUnknown("connection lost before the answer")

    # -- asyncio.Protocol ----------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)
        self._h2.initiate_connection()
        self._flush()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        buf = self._inbuf
        buf += data
        # Split at frame boundaries so GOAWAY can be taken out of the stream.
        pos = 0
        start = 0
        n = len(buf)
        while n - pos >= 9:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            end = pos + 9 + length
            if end > n:
                break
            if buf[pos + 3] == _GOAWAY:
                if pos > start:
                    self._feed(bytes(buf[start:pos]))
                self._on_goaway(bytes(buf[pos + 9 : end]))
                start = end
            pos = end
        if pos > start:
            self._feed(bytes(buf[start:pos]))
        del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed.set()
        self._settings_received.set()  # wakes open(), which then sees the connection is gone
        if self._ping_task is not None:
            self._ping_task.cancel()
        self._wake_window_waiters()
        for stream_id, stream in list(self._streams.items()):
            if not stream.future.done():
                stream.future.set_exception(self._failure_for(stream_id))
        self._streams.clear()
        self._on_change()

    # -- frames --------------------------------------------------------------

    def _on_goaway(self, payload: bytes) -> None:
        last_id = int.from_bytes(payload[0:4], "big") & 0x7FFFFFFF
        try:
            doc = json.loads(payload[8:]) if len(payload) > 8 else {}
            self.goaway_reason = doc.get("reason") if isinstance(doc, dict) else None
        except ValueError:
            self.goaway_reason = None
        self.goaway_last_id = last_id if self.goaway_last_id is None else min(last_id, self.goaway_last_id)
        for stream_id, stream in list(self._streams.items()):
            if stream_id > last_id and not stream.future.done():
                stream.future.set_exception(StreamRefused(f"GOAWAY last_stream_id={last_id} ({self.goaway_reason})"))
        self._maybe_finish_drain()
        self._on_change()

    def _feed(self, data: bytes) -> None:
        try:
            events = self._h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            self.abort()
            return
        for event in events:
            self._handle(event)
        self._flush()

    def _handle(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.headers = list(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            if event.flow_controlled_length:
                self._h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = self._streams.get(event.stream_id)
            if stream is not None:
                stream.body += event.data
        elif isinstance(event, h2.events.StreamEnded):
            stream = self._streams.get(event.stream_id)
            if stream is not None and not stream.future.done():
                stream.future.set_result(parse_response(stream.headers, bytes(stream.body)))
            self._maybe_finish_drain()
        elif isinstance(event, h2.events.StreamReset):
            stream = self._streams.get(event.stream_id)
            if stream is not None and not stream.future.done():
                refused = event.error_code == ErrorCodes.REFUSED_STREAM
                exc = StreamRefused("REFUSED_STREAM") if refused else OutcomeUnknown(f"reset {event.error_code!r}")
                stream.future.set_exception(exc)
            self._maybe_finish_drain()
        elif isinstance(event, h2.events.WindowUpdated | h2.events.RemoteSettingsChanged):
            if isinstance(event, h2.events.RemoteSettingsChanged):
                # Read once per SETTINGS, not per request (h2's settings lookups are not free).
                self._limit = min(self._h2.remote_settings.max_concurrent_streams, self._cap)
                self._settings_received.set()
                self._on_change()
            self._wake_window_waiters()
        elif isinstance(event, h2.events.PingAckReceived):
            if self._ping_waiter is not None and not self._ping_waiter.done():
                self._ping_waiter.set_result(None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.abort()

    def _maybe_finish_drain(self) -> None:
        # After GOAWAY, close once every stream the server promised is answered.
        # Streams still in the map here are the ones whose future was just set.
        if self.goaway_last_id is not None:
            pending = [s for sid, s in self._streams.items() if sid <= self.goaway_last_id and not s.future.done()]
            if not pending:
                asyncio.get_running_loop().call_soon(self.close)

    def _flush_soon(self) -> None:
        # Many requests are sent in one loop iteration: one TLS write for all
        # of them instead of one (or two: HEADERS, DATA) per request.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self._h2.data_to_send()
        if data and self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    # -- keepalive -----------------------------------------------------------

    async def _keepalive(self, interval: float) -> None:
        """PING a connection that has been idle for ``interval``; drop it if no ACK."""
        loop = asyncio.get_running_loop()
        while not self._closed.is_set():
            idle = time.monotonic() - self.last_activity
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            self._ping_waiter = loop.create_future()
            self._h2.ping(b"pushgwKA")
            self._flush()
            try:
                async with asyncio.timeout(max(interval, 5.0)):
                    await self._ping_waiter
            except TimeoutError:
                self.abort()
                return
            self.last_activity = time.monotonic()
