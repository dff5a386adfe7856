"""BridgeSender end to end: real PostgreSQL (or SQLite) store -> real TLS h2 -> strict mock Apple."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

import pytest
from prometheus_client import REGISTRY

from gateway.apns_bridge.keyvault import KeyVault
from gateway.apns_bridge.sender import BridgeSender
from gateway.store.base import Store
from schemas.notification import Status
from tests.bridge.certs import make_client_cert, make_p8, make_self_signed
from tests.bridge.mock_apple import MockApple
from tests.integration.bridge_fixtures import KID, TEAM, TOPIC, accept_apns, bridge_config, make_app, make_store, tok


@pytest.fixture(params=["postgres", "sqlite"])
async def env(request, tmp_path, pg_dsn):  # type: ignore[no-untyped-def]
    cert, key = make_self_signed(tmp_path)
    private, public = make_p8()
    apple = MockApple(cert, key)
    apple.add_key(KID, TEAM, public)
    port = await apple.start()
    cfg = bridge_config(tmp_path, pg_dsn if request.param == "postgres" else "", port, cert)
    store = await make_store(cfg)
    app_id = await make_app(store, cfg, private)
    yield cfg, store, apple, app_id
    await store.close()
    await apple.stop()


def sender(cfg, store: Store, **kw) -> BridgeSender:  # type: ignore[no-untyped-def]
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("backoff_max_s", 0.05)
    kw.setdefault("poll_interval_s", 0.01)
    return BridgeSender(cfg, store, **kw)


async def wait_done(store: Store, app_id: int, ids: list[str], timeout: float = 15.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = {i: await store.status(app_id, i) for i in ids}
        if all(s is not None and s.status is not Status.PENDING for s in statuses.values()):
            return statuses
        if time.monotonic() > deadline:
            pending = [i for i, s in statuses.items() if s is None or s.status is Status.PENDING]
            raise AssertionError(f"{len(pending)} still pending")
        await asyncio.sleep(0.02)


async def test_relay_success_marks_relayed_with_same_apns_id(env) -> None:  # type: ignore[no-untyped-def]
    cfg, store, apple, app_id = env
    apple.add_token(tok(1), TOPIC)
    ids = [await accept_apns(store, app_id, tok(1)) for _ in range(20)]
    relayed_before = REGISTRY.get_sample_value("pushgw_bridge_accept_to_relay_seconds_count") or 0
    s = sender(cfg, store)
    await s.start()
    try:
        statuses = await wait_done(store, app_id, ids)
    finally:
        await s.stop()
    assert all(st.status is Status.RELAYED for st in statuses.values())  # type: ignore[attr-defined]
    assert sorted(a.apns_id for a in apple.answered if a.status == 200) == sorted(ids)
    # Accept-to-send of each relayed notification is in the histogram, once.
    assert REGISTRY.get_sample_value("pushgw_bridge_accept_to_relay_seconds_count") == relayed_before + 20


@pytest.mark.parametrize("reason", ["Unregistered", "BadDeviceToken", "DeviceTokenNotForTopic"])
async def test_permanent_token_errors_unregister_and_record_feedback(env, reason) -> None:  # type: ignore[no-untyped-def]
    cfg, store, apple, app_id = env
    await store.set_webhook(app_id, "http://127.0.0.1:9/hook", "s3cret")
    if reason == "Unregistered":
        apple.unregistered[tok(2)] = 1_700_000_000_555
    elif reason == "DeviceTokenNotForTopic":
        apple.add_token(tok(2), "com.other.topic")
    # BadDeviceToken: the mock does not know the token at all.
    apns_id = await accept_apns(store, app_id, tok(2))
    s = sender(cfg, store)
    assert await s.run_once() == 1
    await s.stop()
    st = await store.status(app_id, apns_id)
    assert st is not None and st.status is Status.REJECTED and st.reason == reason
    token = await store.get_token(tok(2))
    if reason == "BadDeviceToken":  # forgotten: a later push gets 400 BadDeviceToken, as from Apple
        assert token is None
    else:  # a later push gets 410 with the invalidation time
        assert token is not None and not token.active
    feedback = await store.list_feedback(app_id, 0)
    assert [(f.token, f.reason) for f in feedback] == [(tok(2), reason)]
    if reason == "Unregistered":  # Apple's timestamp, not ours
        assert token is not None and feedback[0].at_ms == 1_700_000_000_555 == token.invalidated_at_ms
    jobs = await store.list_webhook_jobs(app_id)
    assert len(jobs) == 1 and b"token.invalidated" in jobs[0].body and reason.encode() in jobs[0].body
    assert len(apple.answered) == 1  # never retried


@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, "TooManyRequests"), (500, "InternalServerError"), (503, "ServiceUnavailable"), (503, "Shutdown")],
)
async def test_temporary_errors_retried_with_same_apns_id(env, status, reason) -> None:  # type: ignore[no-untyped-def]
    cfg, store, apple, app_id = env
    apple.add_token(tok(3), TOPIC)
    apple.answer_next(tok(3), (status, reason), (status, reason))
    apns_id = await accept_apns(store, app_id, tok(3))
    s = sender(cfg, store)
    await s.start()
    try:
        statuses = await wait_done(store, app_id, [apns_id])
    finally:
        await s.stop()
    assert statuses[apns_id].status is Status.RELAYED  # type: ignore[attr-defined]
    assert [(a.apns_id, a.status) for a in apple.answered] == [
        (apns_id, status),
        (apns_id, status),
        (apns_id, 200),
    ]


@pytest.mark.parametrize(("status", "reason"), [(400, "BadTopic"), (413, "PayloadTooLarge"), (403, "Forbidden")])
async def test_other_permanent_errors_rejected_without_retry(env, status, reason) -> None:  # type: ignore[no-untyped-def]
    cfg, store, apple, app_id = env
    apple.add_token(tok(4), TOPIC)
    apple.answer_next(tok(4), (status, reason))
    apns_id = await accept_apns(store, app_id, tok(4))
    s = sender(cfg, store)
    assert await s.run_once() == 1
    await s.stop()
    st = await store.status(app_id, apns_id)
    assert st is not None and (st.status, st.reason) == (Status.REJECTED, reason)
    assert len(apple.answered) == 1
    token = await store.get_token(tok(4))
    assert token is not None and token.active  # not a token problem


async def test_expired_provider_token_refreshes_once(env) -> None:  # type: ignore[no-untyped-def]
    cfg, store, apple, app_id = env
    apple.add_token(tok(5), TOPIC)
    fake = [time.time()]
    s = sender(cfg, store, clock=lambda: fake[0])
    first = await accept_apns(store, app_id, tok(5))
    assert await s.run_once() == 1
    # 25 min later by our clock (no routine refresh yet); Apple's clock says the token is > 1 h old.
    fake[0] += 1500
    apple.clock_offset_s = 3700
    second = await accept_apns(store, app_id, tok(5))
    assert await s.run_once() == 1
    await s.stop()
    st = await store.status(app_id, second)
    assert st is not None and st.status is Status.RELAYED
    assert [(a.apns_id, a.status, a.reason) for a in apple.answered] == [
        (first, 200, None),
        (second, 403, "ExpiredProviderToken"),
        (second, 200, None),
    ]
    assert s._signers[app_id].mints == 2


async def test_goaway_mid_load_loses_nothing_and_sends_nothing_twice(env) -> None:  # type: ignore[no-untyped-def]
    cfg, store, apple, app_id = env
    for i in range(10):
        apple.add_token(tok(100 + i), TOPIC)
    apple.goaway_after = 37  # every connection goes away after 37 requests, mid-batch
    apple.delay_s = 0.005
    ids = [await accept_apns(store, app_id, tok(100 + i % 10)) for i in range(300)]
    s = sender(cfg, store, batch=100, max_connections=2)
    await s.start()
    try:
        statuses = await wait_done(store, app_id, ids, timeout=30)
    finally:
        await s.stop()
    assert all(st.status is Status.RELAYED for st in statuses.values())  # type: ignore[attr-defined]
    ok = [a.apns_id for a in apple.answered if a.status == 200]
    assert sorted(ok) == sorted(ids)  # each exactly once
    assert apple.connections >= 8


async def test_sender_crash_mid_batch_another_sender_finishes(env) -> None:  # type: ignore[no-untyped-def]
    cfg, store, apple, app_id = env
    apple.add_token(tok(6), TOPIC)
    apple.delay_s = 5.0  # A's requests are in flight when it dies
    ids = [await accept_apns(store, app_id, tok(6)) for _ in range(30)]
    a = sender(cfg, store, lease_ms=700, worker_id="A")
    await a.start()
    for _ in range(1000):  # until everything is claimed and on the wire
        if apple.concurrent == 30:
            break
        await asyncio.sleep(0.01)
    await a.crash()
    apple.delay_s = 0
    b = sender(cfg, store, lease_ms=5000, worker_id="B")
    early = await b.run_once()
    assert early == 0  # A's leases still hold
    await asyncio.sleep(0.8)
    await b.start()
    try:
        statuses = await wait_done(store, app_id, ids)
    finally:
        await b.stop()
        await a.stop()
    assert all(st.status is Status.RELAYED for st in statuses.values())  # type: ignore[attr-defined]
    assert all(apple.ok_count(i) == 1 for i in ids)  # A's sockets died before any answer


async def test_sender_process_killed_mid_batch_loses_nothing(tmp_path, pg_dsn) -> None:  # type: ignore[no-untyped-def]
    """A real sender process gets SIGKILL with requests on the wire and outcomes unwritten."""
    cert, key = make_self_signed(tmp_path)
    private, public = make_p8()
    apple = MockApple(cert, key)
    apple.add_key(KID, TEAM, public)
    apple.add_token(tok(7), TOPIC)
    apple.delay_s = 0.2  # answers trickle in (10 streams per connection): some rows done, some in flight
    apple.max_streams = 10
    port = await apple.start()
    cfg = bridge_config(tmp_path, pg_dsn, port, cert)
    store = await make_store(cfg)
    child = None
    try:
        app_id = await make_app(store, cfg, private)
        ids = [await accept_apns(store, app_id, tok(7)) for _ in range(300)]
        args = {"data_dir": str(tmp_path), "dsn": pg_dsn, "port": port, "ca": cert, "lease_ms": 1500}
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bridge.sender_process", json.dumps(args), stdout=asyncio.subprocess.PIPE
        )
        assert child.stdout is not None
        assert (await asyncio.wait_for(child.stdout.readline(), 30)).strip() == b"ready"
        for _ in range(3000):  # until part of the batch is answered and the rest still in flight
            if len(apple.answered) >= 50 and apple.concurrent > 0:
                break
            await asyncio.sleep(0.01)
        child.send_signal(signal.SIGKILL)
        await child.wait()
        answered_before_kill = {a.apns_id for a in apple.answered if a.status == 200}
        assert 0 < len(answered_before_kill) < len(ids)
        apple.delay_s = 0
        b = sender(cfg, store, worker_id="B")
        await b.start()
        try:
            statuses = await wait_done(store, app_id, ids, timeout=30)
        finally:
            await b.stop()
        assert all(st.status is Status.RELAYED for st in statuses.values())  # type: ignore[attr-defined]
        assert all(apple.ok_count(i) >= 1 for i in ids)  # every one reached Apple
        # Resent only what the dead process had not finished in the store, with the same apns-id.
        assert {a.apns_id for a in apple.answered} <= set(ids)
    finally:
        if child is not None and child.returncode is None:
            child.kill()
            await child.wait()
        await store.close()
        await apple.stop()


async def test_app_with_a_certificate_relays_over_client_certificate_tls(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cert, key = make_self_signed(tmp_path)
    client_ca, _pem, p12 = make_client_cert(tmp_path, TOPIC)
    apple = MockApple(cert, key, client_ca=client_ca)  # refuses connections without a client certificate
    apple.add_token(tok(8), TOPIC)
    port = await apple.start()
    cfg = bridge_config(tmp_path, "", port, cert)
    store = await make_store(cfg)
    try:
        await store.create_team(TEAM, "Team")
        app = await store.create_app(TEAM, TOPIC)
        KeyVault.from_config(cfg).put_certificate(app.app_id, p12, b"p12-pass")
        ids = [await accept_apns(store, app.app_id, tok(8)) for _ in range(5)]
        s = sender(cfg, store)
        assert await s.run_once() == 5
        await s.stop()
        statuses = await wait_done(store, app.app_id, ids)
        assert all(st.status is Status.RELAYED for st in statuses.values())  # type: ignore[attr-defined]
        assert sorted(a.apns_id for a in apple.answered if a.status == 200) == sorted(ids)
    finally:
        await store.close()
        await apple.stop()


async def test_attempts_survive_a_sender_restart_and_end_in_rejection(env) -> None:  # type: ignore[no-untyped-def]
    cfg, store, apple, app_id = env
    apple.add_token(tok(9), TOPIC)
    apple.answer_next(tok(9), *[(503, "ServiceUnavailable")] * 5)
    apns_id = await accept_apns(store, app_id, tok(9))
    first = sender(cfg, store, max_attempts=3, backoff_base_s=0.001, backoff_max_s=0.001)
    assert await first.run_once() == 1
    await first.stop()  # a new sender remembers nothing in memory
    second = sender(cfg, store, max_attempts=3, backoff_base_s=0.001, backoff_max_s=0.001)
    await second.start()
    try:
        statuses = await wait_done(store, app_id, [apns_id])
    finally:
        await second.stop()
    st = statuses[apns_id]
    assert (st.status, st.reason) == (Status.REJECTED, "ServiceUnavailable")  # type: ignore[attr-defined]
    assert [a.status for a in apple.answered] == [503, 503, 503]  # 1 + 2: the limit counts both senders


async def test_row_that_keeps_killing_its_senders_is_given_up(env) -> None:  # type: ignore[no-untyped-def]
    cfg, store, apple, app_id = env
    apple.add_token(tok(10), TOPIC)
    apns_id = await accept_apns(store, app_id, tok(10))
    for _ in range(3):  # three senders claimed it and died before any outcome
        assert len(await store.claim_relay_batch("doomed", 10, lease_ms=1)) == 1
        await asyncio.sleep(0.005)
    s = sender(cfg, store, max_attempts=3)
    assert await s.run_once() == 1
    await s.stop()
    st = await store.status(app_id, apns_id)
    assert st is not None and (st.status, st.reason) == (Status.REJECTED, "RetriesExhausted")
    assert apple.answered == []
