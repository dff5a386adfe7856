"""Test helpers for the HTTP/2 listener: a tiny h2 client and a seeded gateway.

The client speaks h2c with prior knowledge (or TLS) over a real socket and
reports everything a test may assert on: status, headers, body, stream
resets and the server's SETTINGS / GOAWAY.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import cast

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    WindowUpdated,
)
from h2.settings import SettingCodes

from gateway.config import Config
from gateway.runtime import Core
from provider_api.h2_server import H2Listener
from schemas.notification import Environment

TEAM = "TEAM000001"
OTHER_TEAM = "TEAM000002"
KID = "KEY0000001"
OTHER_KID = "KEY0000002"
BUNDLE = "com.example.app"
OTHER_BUNDLE = "com.other.app"
PROD_TOKEN = "ab" * 32
SANDBOX_TOKEN = "cd" * 32
DEAD_TOKEN = "ef" * 32
OTHER_APP_TOKEN = "12" * 32
PAYLOAD = b'{"aps":{"alert":"hi"}}'


@dataclass
class Response:
    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    reset: int | None = None  # RST_STREAM error code, if the server reset the stream

    @property
    def reason(self) -> str | None:
        import orjson

        return orjson.loads(self.body).get("reason") if self.body else None


class _RudeH2(H2Connection):
    """A client h2 that ignores the server's MAX_CONCURRENT_STREAMS (to test refusal)."""

    @property
    def open_outbound_streams(self) -> int:
        super().open_outbound_streams  # noqa: B018
        return 0


class H2Client(asyncio.Protocol):
    def __init__(self, rude: bool = False) -> None:
        cls = _RudeH2 if rude else H2Connection
        self.h2 = cls(H2Configuration(client_side=True, header_encoding="utf-8"))
        self.transport: asyncio.Transport | None = None
        self.responses: dict[int, Response] = {}
        self.done: dict[int, asyncio.Future[Response]] = {}
        self.settings: dict[int, int] = {}
        self.settings_seen = asyncio.Event()
        self.goaway: ConnectionTerminated | None = None
        self.lost = asyncio.Event()

    @classmethod
    async def connect(cls, port: int, ssl_ctx: ssl.SSLContext | None = None, rude: bool = False) -> H2Client:
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(lambda: cls(rude), "127.0.0.1", port, ssl=ssl_ctx)
        await asyncio.wait_for(proto.settings_seen.wait(), 5)
        return proto

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's class is not a subclass
        self.h2.initiate_connection()
        self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        for ev in self.h2.receive_data(data):
            if isinstance(ev, RemoteSettingsChanged):
                for code, ch in ev.changed_settings.items():
                    self.settings[int(code)] = ch.new_value
                self.settings_seen.set()
            elif isinstance(ev, ResponseReceived):
                r = self.responses.setdefault(ev.stream_id, Response())
                hdrs = dict(ev.headers)
                r.status = int(hdrs.pop(":status"))
                r.headers = hdrs
            elif isinstance(ev, DataReceived):
                self.responses.setdefault(ev.stream_id, Response()).body += ev.data
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, StreamEnded):
                self._finish(ev.stream_id)
            elif isinstance(ev, StreamReset):
                r = self.responses.setdefault(ev.stream_id, Response())
                r.reset = int(ev.error_code)
                self._finish(ev.stream_id)
            elif isinstance(ev, ConnectionTerminated):
                self.goaway = ev
            elif isinstance(ev, WindowUpdated):
                pass
        if self.transport is not None:
            self.transport.write(self.h2.data_to_send())

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()
        for fut in self.done.values():
            if not fut.done():
                fut.set_exception(ConnectionError("connection lost"))

    def _finish(self, sid: int) -> None:
        fut = self.done.get(sid)
        if fut is not None and not fut.done():
            fut.set_result(self.responses.setdefault(sid, Response()))

    def start(
        self,
        path: str,
        headers: list[tuple[str, str]],
        body: bytes = PAYLOAD,
        method: str = "POST",
        authority: str = "api.push.apple.com",
    ) -> asyncio.Future[Response]:
        assert self.transport is not None
        sid = self.h2.get_next_available_stream_id()
        pseudo = [(":method", method), (":scheme", "https"), (":path", path), (":authority", authority)]
        self.h2.send_headers(sid, pseudo + headers, end_stream=not body)
        chunk = self.h2.max_outbound_frame_size
        for i in range(0, len(body), chunk):
            self.h2.send_data(sid, body[i : i + chunk], end_stream=i + chunk >= len(body))
        self.transport.write(self.h2.data_to_send())
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.done[sid] = fut
        return fut

    async def request(self, *args, **kwargs) -> Response:  # type: ignore[no-untyped-def]
        return await asyncio.wait_for(self.start(*args, **kwargs), 10)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    @property
    def max_streams(self) -> int | None:
        return self.settings.get(int(SettingCodes.MAX_CONCURRENT_STREAMS))


def new_key() -> tuple[ec.EllipticCurvePrivateKey, str, str]:
    """(private key, PKCS#8 PEM (.p8 contents), public PEM)."""
    priv = ec.generate_private_key(ec.SECP256R1())
    p8 = priv.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    pub = (
        priv.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return priv, p8, pub


def make_jwt(priv: ec.EllipticCurvePrivateKey, kid: str = KID, team: str = TEAM, iat: int | None = None) -> str:
    return jwt.encode(
        {"iss": team, "iat": int(time.time()) if iat is None else iat}, priv, algorithm="ES256", headers={"kid": kid}
    )


def push_headers(token: str | None, topic: str = BUNDLE, **extra: str) -> list[tuple[str, str]]:
    out = [("apns-topic", topic), ("apns-push-type", "alert")]
    if token is not None:
        out.append(("authorization", f"bearer {token}"))
    out.extend((k.replace("_", "-"), v) for k, v in extra.items())
    return out


@dataclass
class Gateway:
    core: Core
    listener: H2Listener
    priv: ec.EllipticCurvePrivateKey
    p8: str
    other_priv: ec.EllipticCurvePrivateKey
    app_id: int
    dead_at_ms: int

    @property
    def port(self) -> int:
        return self.listener.port

    _token: str = ""

    def jwt(self) -> str:
        """One token per gateway: ES256 signatures are randomized, so a fresh
        encode is a *new* token and would count as a token update."""
        if not self._token:
            self._token = make_jwt(self.priv)
        return self._token


@contextlib.asynccontextmanager
async def gateway(
    pg_dsn: str, redis_url: str, environment: Environment | None = None, **cfg_kw: object
) -> AsyncIterator[Gateway]:
    cfg = Config(database_url=pg_dsn, redis_url=redis_url, http2_port=0, **cfg_kw)  # type: ignore[arg-type]
    core = await Core.open(cfg)
    listener = H2Listener(cfg, core, environment=environment, port=0, reuse_port=False)
    try:
        store = core.store
        await store.create_team(TEAM, "team one")
        await store.create_team(OTHER_TEAM, "team two")
        app = await store.create_app(TEAM, BUNDLE)
        other_app = await store.create_app(OTHER_TEAM, OTHER_BUNDLE)
        priv, p8, pub = new_key()
        other_priv, _, other_pub = new_key()
        await store.add_provider_key(TEAM, KID, pub)
        await store.add_provider_key(OTHER_TEAM, OTHER_KID, other_pub)
        await store.register_apns_token(app.app_id, PROD_TOKEN, BUNDLE, Environment.PRODUCTION)
        await store.register_apns_token(app.app_id, SANDBOX_TOKEN, BUNDLE, Environment.SANDBOX)
        await store.register_apns_token(app.app_id, DEAD_TOKEN, BUNDLE, Environment.PRODUCTION)
        await store.register_apns_token(other_app.app_id, OTHER_APP_TOKEN, OTHER_BUNDLE, Environment.PRODUCTION)
        dead_at = await store.unregister_token(DEAD_TOKEN)
        assert dead_at is not None
        await listener.start()
        yield Gateway(core, listener, priv, p8, other_priv, app.app_id, dead_at)
    finally:
        await listener.stop()
        await core.close()


def new_id() -> str:
    return str(uuid.uuid4())
