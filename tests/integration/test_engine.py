"""Delivery engine on the real stores (SQLite, PostgreSQL) and real buses.

SQLite runs with the in-process bus (the embedded deployment), PostgreSQL with
Redis (the cluster deployment), both built by ``Core.open`` exactly as the
processes build them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from prometheus_client import REGISTRY

from gateway.bus import messages
from gateway.bus.base import Presence, PresenceEntry
from gateway.bus.redis_bus import make_client
from gateway.bus.redis_presence import RedisPresence
from gateway.config import Config
from gateway.delivery import DeliveryEngine
from gateway.runtime import Core
from gateway.store.base import Device, DeviceToken
from schemas.errors import StoreUnavailable
from schemas.notification import Environment, Notification, Status, StoredNotification, TokenKind

TOPIC = "com.example.app"


@pytest.fixture(params=["sqlite+local", "postgres+redis"])
async def core(request: pytest.FixtureRequest, tmp_path, pg_dsn: str, redis_url: str) -> AsyncIterator[Core]:
    if request.param == "sqlite+local":
        cfg = Config(data_dir=str(tmp_path / "data"))
    else:
        cfg = Config(database_url=pg_dsn, redis_url=redis_url)
    c = await Core.open(cfg)
    yield c
    await c.close()


class Shard:
    """A subscriber on one shard channel that decodes what it gets."""

    def __init__(self) -> None:
        self.received: list[messages.ShardMessage] = []

    def on_message(self, data: bytes) -> None:
        self.received.append(messages.decode(data))

    async def on_resubscribed(self) -> None:
        return None

    def pushes(self) -> list[messages.PushMessage]:
        """One entry per routed notification, whether it came alone or in a batch."""
        return [
            messages.PushMessage(n, m.routed_at_ms)
            for m in self.received
            if isinstance(m, messages.PushMessage | messages.PushBatchMessage)
            for n in messages.pushed(m)
        ]

    def bus_messages(self) -> int:
        return sum(isinstance(m, messages.PushMessage | messages.PushBatchMessage) for m in self.received)


async def subscribe(core: Core, shard_id: str) -> Shard:
    shard = Shard()
    await core.bus.subscribe(shard_id, shard.on_message, shard.on_resubscribed)
    return shard


async def settle(core: Core) -> None:
    """Routing done and every bus message received (pub/sub hop included)."""
    await core.engine.flush()
    await asyncio.sleep(0.15)


async def make_device(core: Core) -> tuple[int, Device, DeviceToken]:
    app = await core.store.get_app_by_bundle(TOPIC)
    if app is None:
        await core.store.create_team("TEAM123456", "team")
        app = await core.store.create_app("TEAM123456", TOPIC)
    device, _secret = await core.store.create_device(app.app_id)
    token = await core.store.issue_token(device.device_id, TOPIC, Environment.PRODUCTION)
    return app.app_id, device, token


def note(app_id: int, device: Device, token: DeviceToken, **kw: object) -> Notification:
    fields: dict[str, object] = {
        "apns_id": str(uuid.uuid4()),
        "app_id": app_id,
        "token": token.token,
        "topic": TOPIC,
        "payload": b'{"aps":{"alert":"hi"}}',
        "device_id": device.device_id,
        "kind": TokenKind.LOCAL,
    }
    fields.update(kw)
    return Notification(**fields)  # type: ignore[arg-type]


class SpyPresence:
    """Wraps the real presence; at each lookup records whether the rows being
    routed are already visible in the store (i.e. committed)."""

    def __init__(self, inner: Presence, core: Core, app_id: int, apns_ids: list[str]) -> None:
        self.inner, self.core, self.app_id, self.apns_ids = inner, core, app_id, apns_ids
        self.lookups: list[list[str]] = []
        self.committed_at_lookup: list[bool] = []

    async def lookup(self, device_ids: Sequence[str]) -> list[PresenceEntry | None]:
        self.lookups.append(list(device_ids))
        for apns_id in self.apns_ids:
            self.committed_at_lookup.append(await self.core.store.status(self.app_id, apns_id) is not None)
        return await self.inner.lookup(device_ids)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def metric(name: str) -> float:
    return REGISTRY.get_sample_value(name) or 0.0


async def test_routes_a_committed_notification_to_the_devices_shard_only(core: Core) -> None:
    app_id, device, token = await make_device(core)
    home, elsewhere = await subscribe(core, "s1"), await subscribe(core, "s2")
    epoch, _ = await core.presence.claim(device.device_id, "s1", ttl_s=30)
    n = note(app_id, device, token)
    spy = SpyPresence(core.presence, core, app_id, [n.apns_id])
    engine = DeliveryEngine(core.store, core.bus, spy)  # type: ignore[arg-type]
    routed_before = metric("pushgw_delivery_routed_total")

    result = await engine.accept(n)
    await engine.flush()
    await asyncio.sleep(0.15)

    assert not result.duplicate
    assert spy.committed_at_lookup == [True]  # presence was read only after the commit
    [push] = home.pushes()
    assert push.notification.id == result.id
    assert push.notification.apns_id == n.apns_id
    assert push.notification.payload == n.payload
    assert push.notification.status is Status.PENDING
    assert elsewhere.received == []
    assert metric("pushgw_delivery_routed_total") - routed_before == 1
    # Routing does not settle anything: the row stays pending until the ack.
    status = await core.store.status(app_id, n.apns_id)
    assert status is not None and status.status is Status.PENDING
    assert epoch > 0


async def test_absent_device_keeps_its_row_pending_and_nothing_is_published(core: Core) -> None:
    app_id, device, token = await make_device(core)
    shard = await subscribe(core, "s1")
    n = note(app_id, device, token)
    result = await core.engine.accept(n)
    await settle(core)
    assert shard.received == []
    backlog = await core.store.backlog(device.device_id, limit=10)
    assert [row.id for row in backlog] == [result.id]


async def test_expiration_zero_is_discarded_when_absent_and_routed_when_present(core: Core) -> None:
    app_id, absent_dev, absent_tok = await make_device(core)
    _, present_dev, present_tok = await make_device(core)
    await core.presence.claim(present_dev.device_id, "s1", ttl_s=30)
    shard = await subscribe(core, "s1")
    discarded_before = metric("pushgw_delivery_discarded_total")

    gone = note(app_id, absent_dev, absent_tok, expiration=0)
    kept = note(app_id, present_dev, present_tok, expiration=0)
    results = await core.engine.accept_many([gone, kept])
    await settle(core)

    gone_status = await core.store.status(app_id, gone.apns_id)
    kept_status = await core.store.status(app_id, kept.apns_id)
    assert gone_status is not None and gone_status.status is Status.DISCARDED
    assert kept_status is not None and kept_status.status is Status.PENDING
    assert await core.store.backlog(absent_dev.device_id, limit=10) == []
    assert [p.notification.id for p in shard.pushes()] == [results[1].id]
    assert metric("pushgw_delivery_discarded_total") - discarded_before == 1


async def test_duplicate_apns_id_is_not_routed_twice(core: Core) -> None:
    app_id, device, token = await make_device(core)
    await core.presence.claim(device.device_id, "s1", ttl_s=30)
    shard = await subscribe(core, "s1")
    n = note(app_id, device, token)
    first = await core.engine.accept(n)
    await settle(core)
    again = await core.engine.accept(n)
    await settle(core)
    assert again.duplicate and again.id == first.id
    assert [p.notification.id for p in shard.pushes()] == [first.id]


async def test_one_lookup_for_a_batch_and_for_concurrent_accepts(core: Core) -> None:
    app_id, dev_a, tok_a = await make_device(core)
    _, dev_b, tok_b = await make_device(core)
    await core.presence.claim(dev_a.device_id, "s1", ttl_s=30)
    await core.presence.claim(dev_b.device_id, "s2", ttl_s=30)
    s1, s2 = await subscribe(core, "s1"), await subscribe(core, "s2")
    spy = SpyPresence(core.presence, core, app_id, [])
    engine = DeliveryEngine(core.store, core.bus, spy)  # type: ignore[arg-type]

    batch = [note(app_id, dev_a, tok_a) for _ in range(20)] + [note(app_id, dev_b, tok_b) for _ in range(10)]
    await engine.accept_many(batch)
    await engine.flush()
    assert len(spy.lookups) == 1
    assert sorted(spy.lookups[0]) == sorted([dev_a.device_id, dev_b.device_id])  # each device once
    await asyncio.sleep(0.15)
    # ... and one bus message per shard carries all of that shard's rows.
    assert (s1.bus_messages(), s2.bus_messages()) == (1, 1)
    assert (len(s1.pushes()), len(s2.pushes())) == (20, 10)

    # Concurrent single accepts share group commits, hence lookups.
    spy.lookups.clear()
    await asyncio.gather(*(engine.accept(note(app_id, dev_a, tok_a)) for _ in range(30)))
    await engine.flush()
    await asyncio.sleep(0.15)
    assert 1 <= len(spy.lookups) < 30
    assert len(s1.pushes()) == 50 and len(s2.pushes()) == 10


async def test_apns_tokens_are_left_for_the_bridge(core: Core) -> None:
    app_id, device, _ = await make_device(core)
    shard = await subscribe(core, "s1")
    apns_token = await core.store.register_apns_token(app_id, "cd" * 32, TOPIC, Environment.PRODUCTION)
    await core.presence.claim(device.device_id, "s1", ttl_s=30)
    n = Notification(
        apns_id=str(uuid.uuid4()),
        app_id=app_id,
        token=apns_token.token,
        topic=TOPIC,
        payload=b'{"aps":{}}',
        kind=TokenKind.APNS,
        expiration=0,
    )
    await core.engine.accept(n)
    await settle(core)
    assert shard.received == []
    status = await core.store.status(app_id, n.apns_id)
    assert status is not None and status.status is Status.PENDING  # not discarded: Apple decides


async def test_routing_failure_is_swallowed_and_the_row_stays_pending(core: Core) -> None:
    app_id, device, token = await make_device(core)
    dead = RedisPresence(make_client("redis://127.0.0.1:1/0"), owns_client=True)
    engine = DeliveryEngine(core.store, core.bus, dead)
    errors_before = metric("pushgw_delivery_route_errors_total")
    try:
        result = await engine.accept(note(app_id, device, token, expiration=0))
        await engine.flush()
    finally:
        await dead.close()
    assert metric("pushgw_delivery_route_errors_total") - errors_before == 1
    assert [row.id for row in await core.store.backlog(device.device_id, limit=10)] == [result.id]


class FlakyPresence:
    """The real presence, but the first ``failures`` lookups fail as if Redis were away."""

    def __init__(self, inner: Presence, failures: int) -> None:
        self.inner, self.failures = inner, failures

    async def lookup(self, device_ids: Sequence[str]) -> list[PresenceEntry | None]:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("Connection closed by server.")
        return await self.inner.lookup(device_ids)

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


async def test_a_failed_routing_batch_rings_its_devices_again(core: Core) -> None:
    """A doorbell lost while Redis restarts is rung again once lookups work (not only by the route repair)."""
    app_id, device, token = await make_device(core)
    home = await subscribe(core, "s1")
    await core.presence.claim(device.device_id, "s1", ttl_s=30)
    engine = DeliveryEngine(core.store, core.bus, FlakyPresence(core.presence, failures=2))  # type: ignore[arg-type]
    try:
        await engine.accept(note(app_id, device, token))
        await engine.flush()
        assert home.received == []  # the push itself was not routed
        for _ in range(100):  # two failed attempts, then the ring goes through
            if home.received:
                break
            await asyncio.sleep(0.1)
        assert home.received == [messages.DrainMessage(device.device_id)]
    finally:
        await engine.close()


def _pg_ctl(action: str) -> None:
    """Stop or start the throwaway PostgreSQL of scripts/with-test-services.sh."""
    data, port = os.environ["TEST_PG_DATA"], os.environ["TEST_PG_PORT"]
    cmd = [f"{os.environ['TEST_PG_BIN']}/pg_ctl", "-D", data, "-w"]
    if action == "stop":
        cmd += ["stop", "-m", "fast"]
    else:
        opts = f"-p {port} -k {data} -c listen_addresses=127.0.0.1 -c max_connections=300 "
        cmd += ["-l", f"{data}/log", "start", "-o", opts + os.environ.get("PUSHGW_PG_OPTS", "-c fsync=on")]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True)


async def test_store_unavailable_propagates_and_nothing_is_routed(core: Core) -> None:
    app_id, device, token = await make_device(core)
    await core.presence.claim(device.device_id, "s1", ttl_s=30)
    shard = await subscribe(core, "s1")
    accepted_before = metric("pushgw_delivery_accepted_total")
    if core.cfg.database_url:
        # Unreachable for real: the server is down.
        _pg_ctl("stop")
        try:
            with pytest.raises(StoreUnavailable):
                await core.engine.accept(note(app_id, device, token))
            with pytest.raises(StoreUnavailable):
                await core.engine.accept_many([note(app_id, device, token)])
        finally:
            _pg_ctl("start")
    else:
        await core.store.close()
        with pytest.raises(StoreUnavailable):
            await core.engine.accept(note(app_id, device, token))
        with pytest.raises(StoreUnavailable):
            await core.engine.accept_many([note(app_id, device, token)])
    await settle(core)
    assert shard.received == []
    assert metric("pushgw_delivery_accepted_total") == accepted_before


async def test_kick_tells_the_old_shard_to_close_older_connections(core: Core) -> None:
    _, device, _ = await make_device(core)
    old_shard = await subscribe(core, "old")
    e1, _ = await core.presence.claim(device.device_id, "old", ttl_s=30)
    e2, replaced = await core.presence.claim(device.device_id, "new", ttl_s=30)
    assert replaced == PresenceEntry("old", e1)
    await core.engine.kick(device.device_id, replaced, e2)
    await settle(core)
    assert old_shard.received == [messages.KickMessage(device.device_id, e2)]


async def test_core_close_is_idempotent(core: Core) -> None:
    await core.close()
    await core.close()


def test_bus_messages_are_bounded_by_payload_size() -> None:
    from gateway.delivery import BUS_MESSAGE_PAYLOAD_MAX, _bus_parts

    def row(i: int, size: int) -> StoredNotification:
        return StoredNotification(
            id=i, apns_id=str(uuid.uuid4()), app_id=1, token="ab", topic=TOPIC, payload=b"x" * size, priority=10,
            push_type="alert", expiration=None, collapse_id=None, device_id="d", kind=TokenKind.LOCAL,
            status=Status.PENDING, accepted_at_ms=0,
        )  # fmt: skip

    big = BUS_MESSAGE_PAYLOAD_MAX // 2
    parts = _bus_parts([row(1, big), row(2, big), row(3, big), row(4, 10)])
    assert [[r.id for r in p] for p in parts] == [[1, 2], [3, 4]]
    assert [[r.id for r in p] for p in _bus_parts([row(5, 3 * big)])] == [[5]]  # one oversized row still goes
