"""A strict mock of Apple's APNs provider API: HTTP/2 over TLS (ALPN h2).

Checks what Apple checks (shared/APNS.md sections 2, 4, 5): POST only,
``/3/device/<hex>``, lowercase UUID apns-id, topic, priority, push type,
collapse id, payload size, ES256 provider JWTs verified against registered
keys (kid, team, signature, iat <= 1 h, one team per connection, token
updates no more often than every 20 min per connection), 410 with a
millisecond timestamp.  Test knobs: ``script`` (per-token answers consumed
in order), ``delay_s`` (slow answers), ``max_streams`` / ``initial_window``
(SETTINGS), ``goaway_after`` (a graceful GOAWAY after N requests on a
connection: in-flight streams are answered, later ones are not processed),
and ``goaway_abrupt`` (GOAWAY then drop the socket, leaving answers owed).
Everything it answers is recorded in ``answered``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import ssl
import time
import uuid
from dataclasses import dataclass, field
from typing import cast

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack
import jwt

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_HEX = re.compile(r"^(?:[0-9a-f]{2})+$")
PUSH_TYPES = {
    "alert", "background", "complication", "controls", "fileprovider", "liveactivity",
    "location", "mdm", "pushtotalk", "voip", "widgets",
}  # fmt: skip


@dataclass
class Answer:
    apns_id: str
    token: str
    status: int
    reason: str | None
    stream_id: int
    conn_no: int


@dataclass
class _Conn:
    no: int
    team: str | None = None
    token: str | None = None
    token_iat: int = 0
    requests: int = 0
    draining_last_id: int | None = None
    owed: set[int] = field(default_factory=set)
    cert_topic: str | None = None  # bundle id of the client certificate, if one was presented


class MockApple:
    def __init__(
        self, cert_file: str, key_file: str, *, sandbox: bool = True, cheap: bool = False, client_ca: str | None = None
    ) -> None:
        self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ssl.load_cert_chain(cert_file, key_file)
        if client_ca is not None:
            # Certificate authentication: no connection without a client
            # certificate from this CA; its CN is the bundle id it may push to.
            self._ssl.verify_mode = ssl.CERT_REQUIRED
            self._ssl.load_verify_locations(cafile=client_ca)
        self._ssl.set_alpn_protocols(["h2"])
        self.sandbox = sandbox
        self.unique_ids: dict[str, str] = {}  # apns-id -> the apns-unique-id answered (sandbox)
        # cheap (benchmarks): skip h2's generic header validation and Huffman
        # coding, so the mock's CPU does not cap the client it measures.
        self.cheap = cheap
        self.keys: dict[str, tuple[str, object]] = {}  # kid -> (team, public key)
        self.tokens: dict[str, str] = {}  # token -> topic
        self.unregistered: dict[str, int] = {}  # token -> ms timestamp
        self.script: dict[str, collections.deque[tuple[int, str]]] = {}
        self.clock_offset_s = 0.0
        self.delay_s = 0.0
        self.max_streams = 1000
        self.initial_window = 65535
        self.goaway_after: int | None = None
        self.goaway_abrupt = False
        self.answered: list[Answer] = []
        self.concurrent = 0
        self.max_concurrent_seen = 0
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._protocols: set[_MockProtocol] = set()

    # -- setup -----------------------------------------------------------------

    def add_key(self, key_id: str, team_id: str, public_pem: str) -> None:
        self.keys[key_id] = (team_id, public_pem)

    def add_token(self, token: str, topic: str) -> None:
        self.tokens[token] = topic

    def answer_next(self, token: str, *answers: tuple[int, str]) -> None:
        self.script.setdefault(token, collections.deque()).extend(answers)

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _MockProtocol(self), "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for proto in list(self._protocols):
                proto.transport.abort() if proto.transport else None
            await self._server.wait_closed()

    def ok_count(self, apns_id: str) -> int:
        return sum(1 for a in self.answered if a.apns_id == apns_id and a.status == 200)

    # -- validation (pure, per request) ----------------------------------------

    def check(self, conn: _Conn, headers: dict[bytes, bytes], dup: bool, body: bytes) -> tuple[int, str | None, int]:
        """(status, reason, timestamp_ms) for one complete request."""
        get = lambda n: headers.get(n, b"").decode()  # noqa: E731
        if dup:
            return 400, "DuplicateHeaders", 0
        apns_id = get(b"apns-id")
        if apns_id and not _UUID.match(apns_id):
            return 400, "BadMessageId", 0
        if get(b":method") != "POST":
            return 405, "MethodNotAllowed", 0
        path = get(b":path")
        if not path.startswith("/3/device/"):
            return 404, "BadPath", 0
        token = path[len("/3/device/") :]
        topic = get(b"apns-topic")
        if not topic:
            return 400, "MissingTopic", 0
        if len(get(b"apns-collapse-id").encode()) > 64:
            return 400, "BadCollapseId", 0
        if get(b"apns-priority") not in ("", "10", "5", "1"):
            return 400, "BadPriority", 0
        if get(b"apns-push-type") and get(b"apns-push-type") not in PUSH_TYPES:
            return 400, "InvalidPushType", 0
        exp = get(b"apns-expiration")
        if exp and not exp.isdigit():
            return 400, "BadExpirationDate", 0
        if not token:
            return 400, "MissingDeviceToken", 0
        if conn.cert_topic is not None and not get(b"authorization"):
            if topic != conn.cert_topic and not topic.startswith(conn.cert_topic + "."):
                return 400, "TopicDisallowed", 0
        else:
            auth = self._check_auth(conn, get(b"authorization"))
            if auth is not None:
                return auth[0], auth[1], 0
        if not _HEX.match(token) or (token not in self.tokens and token not in self.unregistered):
            return 400, "BadDeviceToken", 0
        if token in self.unregistered:
            return 410, "Unregistered", self.unregistered[token]
        if self.tokens[token] != topic:
            return 400, "DeviceTokenNotForTopic", 0
        if not body:
            return 400, "PayloadEmpty", 0
        if len(body) > (5120 if get(b"apns-push-type") == "voip" else 4096):
            return 413, "PayloadTooLarge", 0
        scripted = self.script.get(token)
        if scripted:
            status, reason = scripted.popleft()
            return status, reason, int(self.now() * 1000) if status == 410 else 0
        return 200, None, 0

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def _check_auth(self, conn: _Conn, auth: str) -> tuple[int, str] | None:
        if not auth.startswith("bearer ") or len(auth) <= 7:
            return 403, "MissingProviderToken"
        bearer = auth[7:]
        if bearer == conn.token:  # verified on this connection already (Apple caches it too)
            return (403, "ExpiredProviderToken") if self.now() - conn.token_iat > 3600 else None
        try:
            header = jwt.get_unverified_header(bearer)
        except jwt.InvalidTokenError:
            return 403, "InvalidProviderToken"
        if header.get("alg") != "ES256" or header.get("kid") not in self.keys:
            return 403, "InvalidProviderToken"
        team, public = self.keys[header["kid"]]
        try:
            claims = jwt.decode(bearer, public, algorithms=["ES256"], options={"verify_iat": False})  # type: ignore[arg-type]
        except jwt.InvalidTokenError:
            return 403, "InvalidProviderToken"
        iat = claims.get("iat")
        if claims.get("iss") != team or not isinstance(iat, int):
            return 403, "InvalidProviderToken"
        if conn.team is not None and conn.team != team:
            return 403, "InvalidProviderToken"  # one team per connection
        if self.now() - iat > 3600:
            return 403, "ExpiredProviderToken"
        if conn.token is not None and bearer != conn.token:
            if iat - conn.token_iat < 1200:
                return 429, "TooManyProviderTokenUpdates"
        conn.team, conn.token, conn.token_iat = team, bearer, iat
        return None


class _PlainEncoder(hpack.Encoder):
    def encode(self, headers, huffman: bool = False):  # type: ignore[no-untyped-def]
        return super().encode(headers, huffman=False)


class _LeanServerH2(h2.connection.H2Connection):
    """h2 counts open streams by scanning all of them per new stream
    (quadratic at 1,000 streams); the mock knows its live streams, and purges
    closed ones only when the map doubled (same idea as the bridge client)."""

    live_streams = 0
    _scan_at = 64

    @property
    def open_inbound_streams(self) -> int:
        # h2 asks only when a new stream arrives: count it for the next ask.
        if len(self.streams) >= self._scan_at:
            self.live_streams = self._open_streams(int(not self.config.client_side))
            self._scan_at = 2 * len(self.streams) + 64
        count = self.live_streams
        self.live_streams += 1
        return count


class _MockProtocol(asyncio.Protocol):
    def __init__(self, apple: MockApple) -> None:
        self.apple = apple
        cfg = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=not apple.cheap,
            normalize_inbound_headers=not apple.cheap,
            validate_outbound_headers=not apple.cheap,
            normalize_outbound_headers=not apple.cheap,
        )
        self.h2 = _LeanServerH2(cfg)
        if apple.cheap:
            self.h2.encoder = _PlainEncoder()
        self.transport: asyncio.Transport | None = None
        apple.connections += 1
        self.conn = _Conn(no=apple.connections)
        self.requests: dict[int, tuple[dict[bytes, bytes], bool, bytearray]] = {}
        self.pending_out: dict[int, bytes] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = self.transport.get_extra_info("peercert")
        if peer:
            fields = dict(item for rdn in peer.get("subject", ()) for item in rdn)
            self.conn.cert_topic = fields.get("commonName")
        self.apple._protocols.add(self)
        self.h2.initiate_connection()
        self.h2.update_settings(
            {
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.apple.max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.apple.initial_window,
            }
        )
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.apple._protocols.discard(self)
        self.apple.concurrent -= len(self.conn.owed)
        self.conn.owed.clear()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        # Streams the client has open: being received, awaiting an answer, or answer body queued.
        self.h2.live_streams = len(self.requests) + len(self.conn.owed) + len(self.pending_out)
        try:
            events = self.h2.receive_data(data)
        except Exception:
            if self.transport:
                self.transport.abort()
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                hdrs: dict[bytes, bytes] = {}
                dup = False
                for name, value in ev.headers:
                    dup = dup or name in hdrs
                    hdrs[name] = value  # type: ignore[index,assignment]
                self.requests[ev.stream_id] = (hdrs, dup, bytearray())
            elif isinstance(ev, h2.events.DataReceived):
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                if ev.stream_id in self.requests:
                    self.requests[ev.stream_id][2].extend(ev.data)
            elif isinstance(ev, h2.events.StreamEnded):
                self.on_request(ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                self.requests.pop(ev.stream_id, None)
                if ev.stream_id in self.conn.owed:
                    self.conn.owed.discard(ev.stream_id)
                    self.apple.concurrent -= 1
            elif isinstance(ev, h2.events.WindowUpdated):
                self.send_pending()
        self.flush()

    def on_request(self, stream_id: int) -> None:
        if stream_id not in self.requests:
            return
        hdrs, dup, body = self.requests.pop(stream_id)
        last = self.conn.draining_last_id
        if last is not None and stream_id > last:
            return  # after our GOAWAY: never processed, never answered
        apple = self.apple
        self.conn.requests += 1
        self.conn.owed.add(stream_id)
        apple.concurrent += 1
        apple.max_concurrent_seen = max(apple.max_concurrent_seen, apple.concurrent)
        status, reason, ts = apple.check(self.conn, hdrs, dup, bytes(body))
        apns_id = hdrs.get(b"apns-id", b"").decode() or str(uuid.uuid4())
        token = hdrs.get(b":path", b"").decode().rsplit("/", 1)[-1]
        loop = asyncio.get_running_loop()
        if apple.delay_s:
            loop.call_later(apple.delay_s, self.respond, stream_id, apns_id, token, status, reason, ts)
        else:  # answered inline: data_received writes once for the whole read
            self.respond(stream_id, apns_id, token, status, reason, ts, flush=False)
        if apple.goaway_after is not None and self.conn.requests == apple.goaway_after and last is None:
            self.goaway(stream_id)

    def respond(
        self, stream_id: int, apns_id: str, token: str, status: int, reason: str | None, ts: int, flush: bool = True
    ) -> None:
        if stream_id not in self.conn.owed or self.transport is None or self.transport.is_closing():
            return
        self.conn.owed.discard(stream_id)
        self.apple.concurrent -= 1
        headers = [(b":status", str(status).encode()), (b"apns-id", apns_id.encode())]
        if status == 200 and self.apple.sandbox:
            unique_id = str(uuid.uuid4())
            self.apple.unique_ids[apns_id] = unique_id
            headers.append((b"apns-unique-id", unique_id.encode()))
        self.apple.answered.append(Answer(apns_id, token, status, reason, stream_id, self.conn.no))
        try:
            if status == 200:
                self.h2.send_headers(stream_id, headers, end_stream=True)
            else:
                doc: dict[str, object] = {"reason": reason}
                if status == 410:
                    doc["timestamp"] = ts
                headers.append((b"content-type", b"application/json"))
                self.h2.send_headers(stream_id, headers)
                self.pending_out[stream_id] = json.dumps(doc).encode()
                self.send_pending()
        except Exception:  # the client reset the stream meanwhile
            pass
        if flush:
            self.flush()
        self.maybe_close_drained()

    def send_pending(self) -> None:
        for stream_id, data in list(self.pending_out.items()):
            try:
                if self.h2.local_flow_control_window(stream_id) >= len(data):
                    self.h2.send_data(stream_id, data, end_stream=True)
                    del self.pending_out[stream_id]
            except Exception:
                del self.pending_out[stream_id]

    def goaway(self, last: int) -> None:
        """Graceful GOAWAY written past h2 (which cannot answer after one).

        ``last`` is the last stream processed; later streams already received
        are dropped unprocessed, as Apple's GOAWAY promises.
        """
        self.conn.draining_last_id = last
        debug = json.dumps({"reason": "Shutdown"}).encode()
        payload = last.to_bytes(4, "big") + (0).to_bytes(4, "big") + debug
        frame = len(payload).to_bytes(3, "big") + bytes([0x7, 0]) + (0).to_bytes(4, "big") + payload
        self.flush()
        assert self.transport is not None
        self.transport.write(frame)
        if self.apple.goaway_abrupt:
            self.transport.close()
        else:
            self.maybe_close_drained()

    def maybe_close_drained(self) -> None:
        if self.conn.draining_last_id is not None and not self.conn.owed and not self.pending_out and self.transport:
            asyncio.get_running_loop().call_later(0.05, self.transport.close)
