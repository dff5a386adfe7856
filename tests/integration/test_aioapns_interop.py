"""aioapns, used as its users use it, talks to pushgw as it talks to Apple.

aioapns connects to ``protocol_class.APNS_SERVER:APNS_PORT`` with TLS; the
only change a user makes to point it elsewhere is those two class
attributes (the host name is also sent as the ``host`` header).  We point
them at 127.0.0.1 and a listener pinned to the matching environment, since
the loopback address carries no "sandbox" in its name.  For h2c we give the
pool a factory-level override of ``create_connection`` without ``ssl``: the
rest of aioapns (JWT minting, streams, response parsing) runs unchanged.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioapns import APNs, NotificationRequest, PushType
from aioapns import connection as aioapns_connection
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from schemas.notification import Environment
from tests.bridge.certs import make_self_signed
from tests.integration.h2_helpers import BUNDLE, DEAD_TOKEN, KID, PROD_TOKEN, SANDBOX_TOKEN, TEAM, gateway


@pytest.fixture
def point_aioapns_here() -> Iterator[None]:
    classes = (aioapns_connection.APNsProductionClientProtocol, aioapns_connection.APNsDevelopmentClientProtocol)
    saved = [(c, c.APNS_SERVER, c.APNS_PORT) for c in classes]
    yield
    for cls, server, port in saved:
        cls.APNS_SERVER, cls.APNS_PORT = server, port


def _aim(port: int) -> None:
    for cls in (aioapns_connection.APNsProductionClientProtocol, aioapns_connection.APNsDevelopmentClientProtocol):
        cls.APNS_SERVER, cls.APNS_PORT = "127.0.0.1", port


def _req(token: str, **kw) -> NotificationRequest:  # type: ignore[no-untyped-def]
    return NotificationRequest(
        device_token=token,
        message={"aps": {"alert": "hello from aioapns"}},
        notification_id=str(uuid.uuid4()),
        push_type=PushType.ALERT,
        **kw,
    )


async def _exercise(client: APNs, gw, good_token: str, wrong_env_token: str, dead: bool = True) -> None:  # type: ignore[no-untyped-def]
    ok = _req(good_token)
    res = await client.send_notification(ok)
    assert res.is_successful and res.notification_id == ok.notification_id
    assert await gw.core.store.status(gw.app_id, ok.notification_id) is not None

    # Many concurrent sends over aioapns' pool after the first authenticated one.
    import asyncio

    many = [_req(good_token) for _ in range(50)]
    results = await asyncio.gather(*(client.send_notification(r) for r in many))
    assert all(r.is_successful for r in results)

    gone = await client.send_notification(_req(DEAD_TOKEN))
    if not dead:  # the dead token is a production token: of the other environment here
        assert (gone.status, gone.description) == ("400", "BadDeviceToken")
    else:
        assert (gone.status, gone.description, gone.timestamp) == ("410", "Unregistered", gw.dead_at_ms)

    wrong_env = await client.send_notification(_req(wrong_env_token))
    assert (wrong_env.status, wrong_env.description) == ("400", "BadDeviceToken")

    bad_prio = await client.send_notification(_req(good_token, priority=7))
    assert (bad_prio.status, bad_prio.description) == ("400", "BadPriority")


async def test_aioapns_over_tls(pg_dsn: str, redis_url: str, tmp_path: Path, point_aioapns_here: None) -> None:
    cert, key = make_self_signed(tmp_path)
    async with gateway(pg_dsn, redis_url, environment=Environment.PRODUCTION, tls_cert=cert, tls_key=key) as gw:
        _aim(gw.port)
        ctx = ssl.create_default_context(cafile=cert)
        client = APNs(key=gw.p8, key_id=KID, team_id=TEAM, topic=BUNDLE, use_sandbox=False, ssl_context=ctx)
        try:
            await _exercise(client, gw, PROD_TOKEN, SANDBOX_TOKEN)
        finally:
            client.pool.close()


async def test_aioapns_sandbox_over_tls_with_bad_key(
    pg_dsn: str, redis_url: str, tmp_path: Path, point_aioapns_here: None
) -> None:
    cert, key = make_self_signed(tmp_path)
    async with gateway(pg_dsn, redis_url, environment=Environment.SANDBOX, tls_cert=cert, tls_key=key) as gw:
        _aim(gw.port)
        ctx = ssl.create_default_context(cafile=cert)
        client = APNs(key=gw.p8, key_id=KID, team_id=TEAM, topic=BUNDLE, use_sandbox=True, ssl_context=ctx)
        stranger_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        stranger = APNs(
            key=stranger_key.decode(),
            key_id=KID,
            team_id=TEAM,
            topic=BUNDLE,
            use_sandbox=True,
            ssl_context=ssl.create_default_context(cafile=cert),
        )
        try:
            await _exercise(client, gw, SANDBOX_TOKEN, PROD_TOKEN, dead=False)
            denied = await stranger.send_notification(_req(SANDBOX_TOKEN))
            assert (denied.status, denied.description) == ("403", "InvalidProviderToken")
        finally:
            client.pool.close()
            stranger.pool.close()


class _H2cKeyPool(aioapns_connection.APNsKeyConnectionPool):
    """aioapns' key pool with the TLS wrapper left out (h2c prior knowledge)."""

    async def _create_connection(self, apns_protocol_factory):  # type: ignore[no-untyped-def]
        _, protocol = await self.loop.create_connection(
            apns_protocol_factory, host=self.protocol_class.APNS_SERVER, port=self.protocol_class.APNS_PORT
        )
        return protocol


async def test_aioapns_over_h2c(pg_dsn: str, redis_url: str, point_aioapns_here: None) -> None:
    async with gateway(pg_dsn, redis_url, environment=Environment.PRODUCTION) as gw:
        _aim(gw.port)
        client = APNs(key=gw.p8, key_id=KID, team_id=TEAM, topic=BUNDLE, use_sandbox=False)
        client.pool = _H2cKeyPool(key=gw.p8, key_id=KID, team_id=TEAM, topic=BUNDLE)
        try:
            await _exercise(client, gw, PROD_TOKEN, SANDBOX_TOKEN)
        finally:
            client.pool.close()
