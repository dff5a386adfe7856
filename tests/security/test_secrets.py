"""Secrets at rest and in logs.

* API keys and device secrets are stored only as hashes (every column of
  every table of both stores is searched for the plaintext) and checked with
  a constant-time comparison.
* Provider private keys for the APNs bridge are encrypted at rest.
* Device tokens, device secrets and API keys never appear whole in the logs
  of a real `pushgw serve` run at debug level that exercises the REST, HTTP/2
  and WebSocket paths, their error paths and the bridge.
"""

from __future__ import annotations

import asyncio
import hmac
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import jwt
import pytest

from connection_server.client import DeviceClient
from gateway.apns_bridge.keyvault import KeyVault, VaultError
from gateway.config import Config
from gateway.store import hashing, open_store
from tests.abuse.served import BUNDLE, TEAM, Served, free_port, until
from tests.bridge.certs import make_p8
from tests.integration.h2_helpers import H2Client, push_headers


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> AsyncIterator[Any]:
    cfg = Config(database_url=pg_dsn) if request.param == "postgres" else Config(data_dir=str(tmp_path))
    s = await open_store(cfg)
    s.test_backend = request.param, pg_dsn, tmp_path
    try:
        yield s
    finally:
        await s.close()


async def _all_values(store: Any) -> list[Any]:
    backend, dsn, tmp = store.test_backend
    if backend == "postgres":
        conn = await asyncpg.connect(dsn)
        try:
            tables = [r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")]
            return [v for t in tables for row in await conn.fetch(f'SELECT * FROM "{t}"') for v in row.values()]
        finally:
            await conn.close()
    with sqlite3.connect(Path(tmp) / "pushgw.sqlite3") as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return [v for t in tables for row in db.execute(f'SELECT * FROM "{t}"') for v in row]


async def test_api_keys_and_device_secrets_are_stored_hashed(store: Any) -> None:
    await store.create_team(TEAM, TEAM)
    app = await store.create_app(TEAM, BUNDLE)
    key = await store.create_api_key(app.app_id)
    device, secret = await store.create_device(app.app_id, "alice")
    values = await _all_values(store)
    for plain in (key, secret):
        found = [
            v for v in values if (isinstance(v, str) and plain in v) or (isinstance(v, bytes) and plain.encode() in v)
        ]
        assert not found, "a secret is stored in plain text"
        assert any(isinstance(v, bytes | memoryview) and bytes(v) == hashing.hash_secret(plain) for v in values)
    assert (await store.verify_api_key(key)) is not None
    assert (await store.authenticate_device(device.device_id, secret)) is not None


async def test_secrets_are_compared_in_constant_time(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    await store.create_team(TEAM, TEAM)
    app = await store.create_app(TEAM, BUNDLE)
    key = await store.create_api_key(app.app_id)
    device, secret = await store.create_device(app.app_id)
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((bytes(a), bytes(b)))
        return real(a, b)

    monkeypatch.setattr(hashing.hmac, "compare_digest", spy)
    assert await store.verify_api_key(key) is not None
    assert await store.authenticate_device(device.device_id, secret) is not None
    assert await store.authenticate_device(device.device_id, secret + "x") is None
    assert [a for a, _ in calls] == [hashing.hash_secret(p) for p in (key, secret, secret + "x")]


def test_provider_private_keys_are_encrypted_at_rest(tmp_path: Path) -> None:
    p8, _ = make_p8()
    vault = KeyVault(tmp_path / "vault.json", "the secret key")
    vault.put(7, TEAM, "KEYID12345", p8)
    raw = (tmp_path / "vault.json").read_bytes()
    body = "".join(p8.strip().splitlines()[1:-1])
    for piece in ("PRIVATE KEY", body[:40], body[-40:]):
        assert piece.encode() not in raw
    got = vault.get(7)
    assert got is not None and getattr(got, "p8_pem", None) == p8
    with pytest.raises(VaultError):
        KeyVault(tmp_path / "vault.json", "another key").get(7)
    with pytest.raises(VaultError):
        KeyVault(tmp_path / "vault2.json", "")  # no secret_key: refuses to store keys in the clear


async def test_device_tokens_and_secrets_never_logged_whole(tmp_path: Path) -> None:
    srv = Served(tmp_path, PUSHGW_LOG_LEVEL="debug", PUSHGW_APNS_PRODUCTION_HOST="127.0.0.1",
                 PUSHGW_APNS_SANDBOX_HOST="127.0.0.1", PUSHGW_APNS_PORT=str(free_port()),
                 PUSHGW_SECRET_KEY="log-test-secret-key", PUSHGW_HELLO_TIMEOUT_S="1")  # fmt: skip
    srv.provision()
    srv.start()
    secrets: set[str] = {srv.api_key}
    tokens: set[str] = set()
    try:
        async with aiohttp.ClientSession(headers={"X-API-Key": srv.api_key}) as http:
            device_id, secret, token = await srv.device(http)
            secrets.add(secret)
            tokens.add(token)
            got: list[str] = []
            client = DeviceClient(srv.ws_url, device_id, secret, on_push=lambda p: got.append(p.apns_id))
            client.start()
            await client.wait_connected(10)
            extra = await client.register(BUNDLE)  # a token issued over the socket
            tokens.add(extra)
            apns_id = await srv.send(http, token)
            await until(lambda: apns_id in got, what="the push")
            await client.unregister(extra)
            # Error paths: unknown, unregistered, relayed (to an unreachable "Apple").
            for t in ("12" * 32, extra):
                tokens.add(t)
                async with http.post(f"{srv.base}/api/v1/send",
                                     json={"token": t, "topic": BUNDLE, "payload": {"aps": {}}}) as r:  # fmt: skip
                    assert r.status in (400, 410), await r.text()
            relayed = "fe" * 32
            tokens.add(relayed)
            async with http.post(f"{srv.base}/api/v1/tokens/apns", json={"token": relayed, "topic": BUNDLE}) as r:
                assert r.status in (200, 201), await r.text()
            await srv.send(http, relayed)
            async with http.delete(f"{srv.base}/api/v1/tokens/{token}") as r:
                assert r.status in (200, 204)
            # HTTP/2: a push, a bad token, an unregistered one.
            h2 = await H2Client.connect(srv.h2)
            bearer = jwt.encode({"iss": TEAM, "iat": int(time.time())}, srv.key["private_key_p8"],
                                algorithm="ES256", headers={"kid": srv.key["key_id"]})  # fmt: skip
            for t in (token, "34" * 32, "zz" * 32):
                tokens.add(t)
                await h2.request(f"/3/device/{t}", push_headers(bearer, BUNDLE))
            h2.close()
            # A device with a wrong secret, and a socket that never says hello.
            bad = DeviceClient(srv.ws_url, device_id, "wrong-" + secret)
            bad.start()
            await asyncio.sleep(1.5)
            await bad.stop()
            await client.stop()
            await asyncio.sleep(1.0)  # bridge attempts and ack flushes reach the log
    finally:
        srv.stop()
    log = srv.log()
    assert len(log.splitlines()) > 5, "the run logged something to check"
    leaked = sorted(t for t in tokens | secrets if t in log)
    assert not leaked, f"logged whole: {leaked}\n{log[-3000:]}"
