"""The APNs-compatible HTTP/2 listener: asyncio glue around ``H2ServerConnection``.

TLS with ALPN ``h2`` when ``cfg.tls_cert`` is set (a client that offers no
ALPN, as aioapns does, is served HTTP/2 too); cleartext h2c with prior
knowledge otherwise.  Each request goes: headers (``schemas.apns``) ->
provider token (``provider_auth``) -> topic ownership -> payload -> token
rate limit -> ``submit`` (resolve + durable accept) -> 200 with ``apns-id``.

Environment (sandbox vs production).  Apple tells them apart by host name,
so do we: a request whose ``:authority`` (or ``host``) contains ``sandbox``
or ``development`` is a sandbox request, any other a production request;
a token registered for the other environment gets 400 ``BadDeviceToken``.
A listener can instead be pinned to one environment
(``H2Listener(cfg, core, environment=Environment.SANDBOX)``), e.g. a second
port for clients that connect by IP address.

Shutdown: ``stop()`` stops accepting connections, drains every connection
(MAX_CONCURRENT_STREAMS=0, new streams refused with REFUSED_STREAM, requests
in flight answered), then sends GOAWAY with the last stream id and closes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Any, cast

from h2.exceptions import ProtocolError

from gateway.config import Config
from provider_api import hpack_cache
from provider_api.h2_protocol import H2ServerConnection, Request, echo_id, error_body
from provider_api.provider_auth import ConnectionAuth, ProviderAuth, parse_bearer
from provider_api.ratelimit import RateLimits
from provider_api.submit import CoreLike, submit
from schemas.apns import validate_headers, validate_payload
from schemas.errors import InternalServerError, PushgwError
from schemas.notification import Environment
from schemas.push_types import MAX_PAYLOAD_LIMIT

log = logging.getLogger("pushgw.h2")

hpack_cache.install()  # repeated JWT and path literals decode once (see the module)


def environment_of(authority: str, headers: list[tuple[str, str]]) -> Environment:
    host = authority or next((v for k, v in headers if k == "host"), "")
    host = host.lower()
    return Environment.SANDBOX if "sandbox" in host or "development" in host else Environment.PRODUCTION


class _Shared:
    """Per-listener state every connection uses."""

    def __init__(self, cfg: Config, core: CoreLike, environment: Environment | None) -> None:
        self.cfg = cfg
        self.core = core
        self.environment = environment
        self.auth = ProviderAuth(core.store, max_age_s=cfg.provider_token_max_age_s)
        self.limits = RateLimits.from_config(cfg)
        self.connections: set[H2Protocol] = set()
        self.draining = False


#: Seconds a connection closed for a protocol error keeps draining its input.
LINGER_S = 1.0


class H2Protocol(asyncio.Protocol):
    def __init__(self, shared: _Shared) -> None:
        self.shared = shared
        self.conn = H2ServerConnection(max_streams=shared.cfg.h2_max_concurrent_streams, max_body=MAX_PAYLOAD_LIMIT)
        self.auth = ConnectionAuth(min_refresh_s=shared.cfg.provider_token_min_refresh_s)
        self.transport: asyncio.Transport | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self._flush_pending = False
        self.idle = asyncio.Event()
        self.idle.set()

    # -- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's class is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.shared.connections.add(self)
        self.conn.initiate()
        if self.shared.draining:
            self.conn.begin_drain()
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self.conn.closed:
            return  # lingering after our GOAWAY: discard
        try:
            ready = self.conn.receive(data)
        except ProtocolError as exc:
            log.debug("h2 protocol error, closing: %s", exc)
            self._flush()
            self._linger_close()
            return
        self._dispatch(ready)
        self._flush()
        if self.conn.closed:
            self._linger_close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.shared.connections.discard(self)
        self.transport = None
        # Requests already being accepted finish (their commit is not undone);
        # their answers have nowhere to go.

    # -- requests --------------------------------------------------------------
    def _dispatch(self, ready: list[Request]) -> None:
        for request in ready:
            self.idle.clear()
            task = asyncio.get_running_loop().create_task(self._handle(request))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _handle(self, req: Request) -> None:
        apns_id: str | None = None
        status, body = 200, b""
        try:
            apns_id = await self._process(req)
        except PushgwError as exc:
            status, body = exc.status, error_body(exc)
        except Exception:
            log.exception("internal error on an APNs request")
            exc2 = InternalServerError()
            status, body = exc2.status, error_body(exc2)
        if apns_id is None:
            apns_id = echo_id(_raw_apns_id(req))
        self._dispatch(self.conn.respond(req.stream_id, status, apns_id, body))
        self._flush_soon()
        if self.conn.idle:
            self.idle.set()
            if self.conn.draining:
                self._goaway()

    async def _process(self, req: Request) -> str:
        shared = self.shared
        auth = shared.auth
        hdrs = validate_headers(req.method, req.path, req.headers)
        token = parse_bearer(hdrs.authorization)
        # Cached answers are plain calls; a coroutine only on a cache miss.
        verified = auth.verify_cached(token) or await auth.verify(token)
        self.auth.admit(token, verified)
        if not self.conn.authenticated:
            # First valid token: advertise the full stream limit and release
            # the requests that queued behind this one.
            self.conn.mark_authenticated()
            self._dispatch(self.conn.take_ready())
            self._flush()
        app = auth.app_for_topic_cached(verified.team_id, hdrs.topic, hdrs.push_type) or await auth.app_for_topic(
            verified.team_id, hdrs.topic, hdrs.push_type
        )
        payload = validate_payload(hdrs, req.body)
        if shared.limits.limits_tokens:
            await shared.limits.check_token(hdrs.token)
        env = shared.environment or environment_of(req.authority, req.headers)
        result = await submit(
            shared.core,
            app,
            token=hdrs.token,
            topic=hdrs.topic,
            payload=payload,
            apns_id=hdrs.apns_id,
            priority=hdrs.priority,
            push_type=hdrs.push_type,
            expiration=hdrs.expiration,
            collapse_id=hdrs.collapse_id,
            deliver_at_ms=hdrs.deliver_at_ms,
            environment=env,
        )
        return result.apns_id

    # -- output / shutdown -------------------------------------------------------
    def _flush_soon(self) -> None:
        """Write at the end of this loop iteration: a group commit answers many
        streams in one iteration, and they go out in one write, not one each."""
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        data = self.conn.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def _linger_close(self) -> None:
        """Close after a GOAWAY for an error, reading (and dropping) input for a
        moment: closing a socket with unread input sends a TCP reset, which
        would destroy the GOAWAY before a peer still sending could read it."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if transport.can_write_eof():
            transport.write_eof()
        asyncio.get_running_loop().call_later(LINGER_S, transport.close)

    def _goaway(self) -> None:
        self.conn.goaway()
        self._flush()
        self._close()

    def begin_drain(self) -> None:
        self.conn.begin_drain()
        self._flush()
        if self.conn.idle and not self.tasks:
            self._goaway()


def _raw_apns_id(req: Request) -> str | None:
    for name, value in req.headers:
        if name == "apns-id":
            return value.lower()
    return None


class H2Listener:
    """The HTTP/2 APNs listener of one process (see module docstring)."""

    def __init__(
        self,
        cfg: Config,
        core: CoreLike,
        *,
        environment: Environment | None = None,
        port: int | None = None,
        reuse_port: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self._shared = _Shared(cfg, core, environment)
        self._port = cfg.http2_port if port is None else port
        self._reuse_port = (not cfg.embedded) if reuse_port is None else reuse_port
        self._server: asyncio.base_events.Server | None = None

    @property
    def port(self) -> int:
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._port

    @property
    def tls(self) -> bool:
        return bool(self.cfg.tls_cert)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.cfg.tls_cert:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cfg.tls_cert, self.cfg.tls_key)
        ctx.set_alpn_protocols(["h2"])
        return ctx

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        kwargs: dict[str, Any] = {"reuse_port": True} if self._reuse_port else {}
        self._server = await loop.create_server(
            lambda: H2Protocol(self._shared),
            self.cfg.host,
            self._port,
            ssl=self._ssl_context(),
            backlog=1024,
            **kwargs,
        )

    async def stop(self, timeout: float = 10.0) -> None:
        """Graceful drain: no new connections or streams, finish in-flight, GOAWAY."""
        if self._server is None:
            return
        self._server.close()
        self._shared.draining = True
        conns = list(self._shared.connections)
        for proto in conns:
            proto.begin_drain()
        pending = [t for proto in conns for t in proto.tasks]
        if pending:
            await asyncio.wait(pending, timeout=timeout)
        for proto in conns:
            proto._goaway()
        self._server = None
        await self._shared.limits.close()

    def describe(self) -> list[str]:
        scheme = "https (TLS, ALPN h2)" if self.tls else "h2c (prior knowledge)"
        env = self._shared.environment.value if self._shared.environment else "by host name"
        return [f"  APNs HTTP/2 API  {scheme} on {self.cfg.host}:{self.port}  (environment: {env})"]
