"""The h2 client and pool against the strict mock of Apple (real TLS sockets)."""

from __future__ import annotations

import asyncio
import uuid

import h2.connection
import pytest

from gateway.apns_bridge.client import APNsConnection, OutcomeUnknown, StreamRefused
from gateway.apns_bridge.pool import ConnectionPool, make_ssl_context
from gateway.apns_bridge.signer import ProviderTokenSigner
from tests.bridge.conftest import KID, TEAM
from tests.bridge.mock_apple import MockApple

TOPIC = "com.example.app"
PAYLOAD = b'{"aps":{"alert":"hi"}}'


def tok(i: int) -> str:
    return f"{i:064x}"


def headers(token: str, bearer: str, apns_id: str | None = None, **extra: str) -> list[tuple[bytes, bytes]]:
    h = [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", b"127.0.0.1"),
        (b":path", f"/3/device/{token}".encode()),
        (b"authorization", f"bearer {bearer}".encode()),
        (b"apns-id", (apns_id or str(uuid.uuid4())).encode()),
        (b"apns-topic", TOPIC.encode()),
        (b"apns-push-type", b"alert"),
    ]
    for k, v in extra.items():
        name = k.replace("_", "-").encode()
        h = [x for x in h if x[0] != name] + [(name, v.encode())]
    return h


@pytest.fixture
async def pool(apple: MockApple, tls_files):  # type: ignore[no-untyped-def]
    p = ConnectionPool("127.0.0.1", apple.port, make_ssl_context(tls_files[0]), max_connections=2)
    yield p
    await p.close()


@pytest.fixture
def signer(p8) -> ProviderTokenSigner:  # type: ignore[no-untyped-def]
    return ProviderTokenSigner(TEAM, KID, p8[0])


async def test_success_echoes_apns_id_and_frees_stream_state(apple, pool, signer) -> None:  # type: ignore[no-untyped-def]
    apple.add_token(tok(1), TOPIC)
    ids = [str(uuid.uuid4()) for _ in range(300)]
    results = await asyncio.gather(*(pool.request(headers(tok(1), signer.token(), i), PAYLOAD, 5) for i in ids))
    assert [r.status for r in results] == [200] * 300
    assert [r.apns_id for r in results] == ids
    assert all(r.unique_id for r in results)  # sandbox mock sends apns-unique-id
    # aioapns leaks one map entry per success; we must hold none.
    assert all(c.in_flight == 0 for c in pool.connections)
    assert sum(_h2_open_streams(c) for c in pool.connections) == 0
    # h2 keeps closed streams until it purges them; the purge must keep up
    # (bounded by the concurrency, not growing with the number of requests).
    for _ in range(10):
        more = [str(uuid.uuid4()) for _ in range(100)]
        await asyncio.gather(*(pool.request(headers(tok(1), signer.token(), i), PAYLOAD, 5) for i in more))
    assert all(len(c._h2.streams) <= 2 * 300 + 64 for c in pool.connections)


def _h2_open_streams(conn: APNsConnection) -> int:
    """h2's own (full-scan) count, not the cheap one the client gives h2."""
    return int(h2.connection.H2Connection.open_outbound_streams.fget(conn._h2))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("extra", "token_state", "status", "reason"),
    [
        ({}, "unknown", 400, "BadDeviceToken"),
        ({}, "other-topic", 400, "DeviceTokenNotForTopic"),
        ({"apns_priority": "7"}, "ok", 400, "BadPriority"),
        ({"apns_collapse_id": "x" * 65}, "ok", 400, "BadCollapseId"),
        ({"apns_expiration": "soon"}, "ok", 400, "BadExpirationDate"),
        ({"apns_push_type": "fax"}, "ok", 400, "InvalidPushType"),
    ],
)
async def test_request_errors_carry_apples_reason(apple, pool, signer, extra, token_state, status, reason) -> None:  # type: ignore[no-untyped-def]
    if token_state == "ok":
        apple.add_token(tok(2), TOPIC)
    elif token_state == "other-topic":
        apple.add_token(tok(2), "com.other.app")
    r = await pool.request(headers(tok(2), signer.token(), **extra), PAYLOAD, 5)
    assert (r.status, r.reason) == (status, reason)


async def test_unregistered_carries_millisecond_timestamp(apple, pool, signer) -> None:  # type: ignore[no-untyped-def]
    apple.unregistered[tok(3)] = 1_700_000_000_123
    r = await pool.request(headers(tok(3), signer.token()), PAYLOAD, 5)
    assert (r.status, r.reason, r.timestamp_ms) == (410, "Unregistered", 1_700_000_000_123)


async def test_bad_signature_and_missing_token_rejected(apple, pool, signer) -> None:  # type: ignore[no-untyped-def]
    from tests.bridge.certs import make_p8

    apple.add_token(tok(4), TOPIC)
    forged = ProviderTokenSigner(TEAM, KID, make_p8()[0]).token()
    r = await pool.request(headers(tok(4), forged), PAYLOAD, 5)
    assert (r.status, r.reason) == (403, "InvalidProviderToken")
    h = [x for x in headers(tok(4), "") if x[0] != b"authorization"]
    r = await pool.request(h, PAYLOAD, 5)
    assert (r.status, r.reason) == (403, "MissingProviderToken")


async def test_payload_limits(apple, pool, signer) -> None:  # type: ignore[no-untyped-def]
    apple.add_token(tok(5), TOPIC)
    big = b'{"aps":{},"x":"' + b"a" * 5000 + b'"}'
    r = await pool.request(headers(tok(5), signer.token()), big, 5)
    assert (r.status, r.reason) == (413, "PayloadTooLarge")


async def test_stream_limit_is_honoured(apple, pool, signer) -> None:  # type: ignore[no-untyped-def]
    apple.add_token(tok(6), TOPIC)
    apple.max_streams = 3
    apple.delay_s = 0.02
    pool.max_connections = 1
    results = await asyncio.gather(*(pool.request(headers(tok(6), signer.token()), PAYLOAD, 10) for _ in range(40)))
    assert all(r.status == 200 for r in results)
    assert apple.max_concurrent_seen == 3  # the limit was reached, never exceeded


async def test_flow_control_small_window(apple, pool, signer) -> None:  # type: ignore[no-untyped-def]
    apple.add_token(tok(7), TOPIC)
    apple.initial_window = 100  # the payload needs many WINDOW_UPDATEs
    payload = b'{"aps":{"alert":"' + b"b" * 3000 + b'"}}'
    results = await asyncio.gather(*(pool.request(headers(tok(7), signer.token()), payload, 5) for _ in range(5)))
    assert [r.status for r in results] == [200] * 5


async def test_deadline_frees_the_slot(apple, pool, signer) -> None:  # type: ignore[no-untyped-def]
    apple.add_token(tok(8), TOPIC)
    apple.delay_s = 1.0
    with pytest.raises(OutcomeUnknown):
        await pool.request(headers(tok(8), signer.token()), PAYLOAD, 0.2)
    assert all(c.in_flight == 0 for c in pool.connections)
    apple.delay_s = 0
    assert (await pool.request(headers(tok(8), signer.token()), PAYLOAD, 5)).status == 200


async def test_graceful_goaway_answers_promised_streams_and_refuses_the_rest(apple, pool, signer) -> None:  # type: ignore[no-untyped-def]
    apple.add_token(tok(9), TOPIC)
    apple.goaway_after = 50
    apple.delay_s = 0.01
    ids = [str(uuid.uuid4()) for _ in range(200)]

    async def one(apns_id: str) -> int:
        while True:  # what the sender does with StreamRefused: send again at once
            try:
                return (await pool.request(headers(tok(9), signer.token(), apns_id), PAYLOAD, 5)).status
            except StreamRefused:
                continue

    statuses = await asyncio.gather(*(one(i) for i in ids))
    assert statuses == [200] * 200
    assert all(apple.ok_count(i) == 1 for i in ids)  # nothing lost, nothing twice
    assert apple.connections >= 4


async def test_abrupt_goaway_reports_unknown_outcome(apple, pool, signer) -> None:  # type: ignore[no-untyped-def]
    apple.add_token(tok(10), TOPIC)
    apple.goaway_after = 1
    apple.goaway_abrupt = True
    apple.delay_s = 0.2
    with pytest.raises(OutcomeUnknown):
        await pool.request(headers(tok(10), signer.token()), PAYLOAD, 5)


async def test_idle_connection_is_pinged(apple, tls_files, signer) -> None:  # type: ignore[no-untyped-def]
    apple.add_token(tok(11), TOPIC)
    pool = ConnectionPool("127.0.0.1", apple.port, make_ssl_context(tls_files[0]), ping_interval_s=0.1)
    try:
        assert (await pool.request(headers(tok(11), signer.token()), PAYLOAD, 5)).status == 200
        conn = pool.connections[0]
        before = conn.last_activity
        await asyncio.sleep(0.35)
        assert conn.last_activity > before  # PING ACKs kept it alive
        assert conn.usable
    finally:
        await pool.close()


async def test_no_alpn_h2_refused(tls_files) -> None:  # type: ignore[no-untyped-def]
    import ssl

    srv_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    srv_ctx.load_cert_chain(*tls_files)
    srv_ctx.set_alpn_protocols(["http/1.1"])
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=srv_ctx)
    port = server.sockets[0].getsockname()[1]
    pool = ConnectionPool("127.0.0.1", port, make_ssl_context(tls_files[0]))
    try:
        with pytest.raises(StreamRefused, match="ALPN"):
            await pool.request([], b"", 2)
    finally:
        await pool.close()
        server.close()
