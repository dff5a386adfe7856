"""TLS on every listener when a certificate is configured (DESIGN: `tls_cert`/`tls_key`).

A real `pushgw serve` with a generated certificate: the REST API, the ops
routes (health, readiness, metrics), the device WebSocket and the APNs HTTP/2
listener all complete a verified TLS handshake, and none of them answers
clear text.  (Before this test the REST/ops listener and the WebSocket
ignored the certificate and spoke clear text.)
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import websockets
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RemoteSettingsChanged

from connection_server import frames as f
from tests.abuse.served import Served, client_ssl
from tests.bridge.certs import make_self_signed


@pytest.fixture
async def tls_served(tmp_path: Path) -> AsyncIterator[tuple[Served, str]]:
    cert, key = make_self_signed(tmp_path)
    srv = Served(tmp_path, PUSHGW_TLS_CERT=cert, PUSHGW_TLS_KEY=key)
    srv.provision()
    srv.start()
    try:
        yield srv, cert
    finally:
        srv.stop()


async def _clear_text_refused(port: int) -> None:
    """A clear-text HTTP request gets no HTTP answer from a TLS port."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(1024), 10)
    except (ConnectionError, TimeoutError):
        data = b""
    finally:
        writer.close()
    assert not data.startswith(b"HTTP/"), data[:80]


async def test_rest_and_ops_routes_use_tls(tls_served: tuple[Served, str]) -> None:
    srv, ca = tls_served
    assert srv.base.startswith("https://")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(ca))) as http:
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            async with http.get(srv.base + path) as r:
                assert r.status == 200, (path, r.status)
        dev_id, _, _ = await srv.device(http)
        assert dev_id
    await _clear_text_refused(srv.rest)


async def test_device_websocket_uses_tls(tls_served: tuple[Served, str]) -> None:
    srv, ca = tls_served
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(ca))) as http:
        dev_id, secret, _ = await srv.device(http)
    async with websockets.connect(srv.ws_url, ssl=client_ssl(ca)) as ws:
        await ws.send(f.encode(f.Hello(device_id=dev_id, secret=secret)).decode())
        assert isinstance(f.decode_server(await asyncio.wait_for(ws.recv(), 10)), f.Welcome)
    with pytest.raises((websockets.InvalidMessage, ConnectionError, EOFError, TimeoutError, OSError)):
        async with websockets.connect(f"ws://127.0.0.1:{srv.ws}/v1/connect", open_timeout=5):
            pass


async def test_http2_listener_uses_tls_with_alpn_h2(tls_served: tuple[Served, str]) -> None:
    srv, ca = tls_served
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", srv.h2, ssl=client_ssl(ca, ["h2"]), server_hostname="localhost"
    )
    try:
        sslobj = writer.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject) and sslobj.selected_alpn_protocol() == "h2"
        conn = H2Connection(H2Configuration(client_side=True))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        await writer.drain()
        events = conn.receive_data(await asyncio.wait_for(reader.read(65536), 10))
        assert any(isinstance(e, RemoteSettingsChanged) for e in events)
    finally:
        writer.close()
    await _clear_text_refused(srv.h2)
