"""Connection-level behaviour of the HTTP/2 listener over real sockets:
stream limits before/after auth, per-connection token rules, JWT attacks,
graceful drain."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from h2.errors import ErrorCodes

from tests.integration.h2_helpers import (
    KID,
    OTHER_KID,
    OTHER_TEAM,
    PROD_TOKEN,
    Gateway,
    H2Client,
    gateway,
    make_jwt,
    push_headers,
)

P = f"/3/device/{PROD_TOKEN}"


@pytest.fixture
async def gw(pg_dsn: str, redis_url: str):  # type: ignore[no-untyped-def]
    async with gateway(pg_dsn, redis_url, h2_max_concurrent_streams=64) as g:
        yield g


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _alg_none(gw: Gateway) -> str:
    head = _b64(json.dumps({"alg": "none", "kid": KID}).encode())
    body = _b64(json.dumps({"iss": "TEAM000001", "iat": int(time.time())}).encode())
    return f"{head}.{body}."


def _hs256_with_public_key(gw: Gateway) -> str:
    pub = gw.priv.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    body = _b64(json.dumps({"iss": "TEAM000001", "iat": int(time.time())}).encode())
    import hashlib
    import hmac

    sig = hmac.new(pub, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(sig)}"


ATTACKS = {
    "alg none": (_alg_none, "InvalidProviderToken"),
    "HS256 keyed with the public key": (_hs256_with_public_key, "InvalidProviderToken"),
    "unknown kid": (lambda gw: make_jwt(gw.priv, kid="NOSUCHKEY1"), "InvalidProviderToken"),
    "another team's kid": (lambda gw: make_jwt(gw.priv, kid=OTHER_KID), "InvalidProviderToken"),
    "other team's key claiming our team": (lambda gw: make_jwt(gw.other_priv, kid=OTHER_KID), "InvalidProviderToken"),
    "signed by a stranger": (lambda gw: make_jwt(gw.other_priv), "InvalidProviderToken"),
    "expired": (lambda gw: make_jwt(gw.priv, iat=int(time.time()) - 3601 - 5), "ExpiredProviderToken"),
    "iat in the future": (lambda gw: make_jwt(gw.priv, iat=int(time.time()) + 600), "InvalidProviderToken"),
    "garbage": (lambda gw: "garbage", "InvalidProviderToken"),
    "RS-style alg": (
        lambda gw: jwt.encode({"iss": "TEAM000001", "iat": int(time.time())}, "k" * 64, "HS512", {"kid": KID}),
        "InvalidProviderToken",
    ),
}


@pytest.mark.parametrize("name", list(ATTACKS))
async def test_jwt_attacks_are_refused(gw: Gateway, name: str) -> None:
    build, reason = ATTACKS[name]
    client = await H2Client.connect(gw.port)
    try:
        resp = await client.request(P, push_headers(build(gw)))
        assert (resp.status, resp.reason) == (403, reason)
        assert client.max_streams == 1  # still unauthenticated
    finally:
        client.close()


async def test_revoked_key_is_refused(gw: Gateway) -> None:
    await gw.core.store.revoke_provider_key(KID)
    client = await H2Client.connect(gw.port)
    try:
        resp = await client.request(P, push_headers(gw.jwt()))
        assert (resp.status, resp.reason) == (403, "InvalidProviderToken")
    finally:
        client.close()


async def test_one_stream_until_valid_token_then_configured_limit(gw: Gateway) -> None:
    client = await H2Client.connect(gw.port, rude=True)
    try:
        assert client.max_streams == 1
        denied = await client.request(P, push_headers(None))
        assert denied.reason == "MissingProviderToken" and client.max_streams == 1
        # The client has acked MAX_CONCURRENT_STREAMS=1: a second concurrent stream is refused.
        slow = client.start(P, push_headers(gw.jwt()))
        extra = client.start(P, push_headers(gw.jwt()))
        assert (await slow).status == 200
        assert (await extra).reset == ErrorCodes.REFUSED_STREAM
        await asyncio.sleep(0.05)
        assert client.max_streams == 64
        many = await asyncio.gather(*(client.start(P, push_headers(gw.jwt())) for _ in range(40)))
        assert [r.status for r in many] == [200] * 40
    finally:
        client.close()


async def test_token_change_too_soon_is_429_and_old_token_keeps_working(gw: Gateway) -> None:
    client = await H2Client.connect(gw.port)
    try:
        assert (await client.request(P, push_headers(gw.jwt()))).status == 200
        newer = make_jwt(gw.priv)
        resp = await client.request(P, push_headers(newer))
        assert (resp.status, resp.reason) == (429, "TooManyProviderTokenUpdates")
        assert (await client.request(P, push_headers(gw.jwt()))).status == 200
    finally:
        client.close()


async def test_token_change_allowed_after_min_refresh(pg_dsn: str, redis_url: str) -> None:
    async with gateway(pg_dsn, redis_url, provider_token_min_refresh_s=0) as g:
        client = await H2Client.connect(g.port)
        try:
            assert (await client.request(P, push_headers(g.jwt()))).status == 200
            assert (await client.request(P, push_headers(make_jwt(g.priv)))).status == 200
        finally:
            client.close()


async def test_one_team_per_connection(pg_dsn: str, redis_url: str) -> None:
    async with gateway(pg_dsn, redis_url, provider_token_min_refresh_s=0) as g:
        client = await H2Client.connect(g.port)
        try:
            assert (await client.request(P, push_headers(g.jwt()))).status == 200
            other = make_jwt(g.other_priv, kid=OTHER_KID, team=OTHER_TEAM)
            resp = await client.request(P, push_headers(other, topic="com.other.app"))
            assert (resp.status, resp.reason) == (403, "InvalidProviderToken")
            # A fresh connection may use the other team.
            fresh = await H2Client.connect(g.port)
            try:
                resp = await fresh.request(P, push_headers(other, topic="com.other.app"))
                assert resp.reason == "DeviceTokenNotForTopic"  # authenticated; token is not its app's
            finally:
                fresh.close()
        finally:
            client.close()


async def test_graceful_drain_answers_in_flight_then_goaway(gw: Gateway) -> None:
    client = await H2Client.connect(gw.port)
    try:
        assert (await client.request(P, push_headers(gw.jwt()))).status == 200
        in_flight = [client.start(P, push_headers(gw.jwt())) for _ in range(20)]
        stopping = asyncio.create_task(gw.listener.stop())
        done = await asyncio.gather(*in_flight)
        await asyncio.wait_for(stopping, 10)
        await asyncio.wait_for(client.lost.wait(), 5)
        # Every stream either got its answer or was refused before any work (safe to retry).
        assert all(r.status == 200 or r.reset == ErrorCodes.REFUSED_STREAM for r in done)
        assert any(r.status == 200 for r in done)
        assert client.goaway is not None and client.goaway.error_code == ErrorCodes.NO_ERROR
        ok_ids = {r.headers["apns-id"] for r in done if r.status == 200}
        for apns_id in ok_ids:
            assert await gw.core.store.status(gw.app_id, apns_id) is not None
    finally:
        client.close()


async def test_new_stream_during_drain_is_refused(gw: Gateway) -> None:
    client = await H2Client.connect(gw.port)
    try:
        assert (await client.request(P, push_headers(gw.jwt()))).status == 200
        proto = next(iter(gw.listener._shared.connections))
        proto.conn.begin_drain()  # what stop() does first, without the final GOAWAY
        late = client.start(P, push_headers(gw.jwt()))
        assert (await late).reset == ErrorCodes.REFUSED_STREAM
    finally:
        client.close()


@pytest.mark.parametrize(
    "bad_header",
    [("Apns-Priority", "10"), (":protocol", "websocket")],
    ids=["uppercase name", "unknown pseudo-header"],
)
async def test_malformed_request_resets_only_its_stream(gw: Gateway, bad_header: tuple[str, str]) -> None:
    """RFC 9113 8.1.1: a malformed request is a stream error (PROTOCOL_ERROR);
    the connection and its other streams go on."""
    client = await H2Client.connect(gw.port)
    try:
        client.h2.config.validate_outbound_headers = False  # let the client send what h2 would refuse
        client.h2.config.normalize_outbound_headers = False
        path = "/3/device/" + PROD_TOKEN
        ok = await client.request(path, push_headers(gw.jwt()))
        bad = await client.request(path, [bad_header, *push_headers(gw.jwt())])
        assert (ok.status, bad.status, bad.reset) == (200, 0, ErrorCodes.PROTOCOL_ERROR)
        again = await client.request(path, push_headers(gw.jwt()))
        assert again.status == 200 and client.goaway is None
    finally:
        client.close()
