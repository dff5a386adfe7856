"""Delivery through a ShardServer running in the test process, for both deployments:
cluster (PostgreSQL + Redis) and embedded (SQLite + in-process bus)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from connection_server import frames as f
from connection_server.client import DeviceClient, DeviceError
from connection_server.server import ShardServer
from connection_server.simulate import SimDevice, provision
from gateway.config import Config
from gateway.runtime import Core
from schemas.notification import Status
from tests.integration.test_delivery_support import BUNDLE, Inbox, eventually, notification


@pytest.fixture(params=["cluster", "embedded"])
async def shard(request, tmp_path, pg_dsn, redis_url) -> AsyncIterator[tuple[Core, ShardServer]]:  # type: ignore[no-untyped-def]
    if request.param == "cluster":
        cfg = Config(database_url=pg_dsn, redis_url=redis_url, ws_port=0, shard_id="t1", ack_flush_ms=2)
    else:
        cfg = Config(data_dir=str(tmp_path), ws_port=0, shard_id="0", ack_flush_ms=2)
    core = await Core.open(cfg)
    server = ShardServer(cfg, core)
    await server.start()
    try:
        yield core, server
    finally:
        await server.stop()
        await core.close()


def url(server: ShardServer) -> str:
    return f"ws://127.0.0.1:{server.port}/v1/connect"


async def one_device(core: Core) -> SimDevice:
    [dev] = await provision(core.store, BUNDLE, 1)
    return dev


async def status(core: Core, dev: SimDevice, apns_id: str) -> Status:
    st = await core.store.status(dev.app_id, apns_id)
    assert st is not None
    return st.status


async def test_online_delivery_is_acked_into_the_store(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    async with Inbox(url(server), dev) as inbox:
        n = notification(dev, 1)
        await core.engine.accept(n)
        await eventually(lambda: inbox.ids == [n.apns_id], what="push arrives")
        push = inbox.pushes[0]
        assert json.loads(bytes(push.payload)) == {"aps": {"alert": "n1"}, "n": 1}
        assert push.token == dev.token and push.topic == BUNDLE
        for _ in range(200):
            if await status(core, dev, n.apns_id) is Status.DELIVERED:
                break
            await asyncio.sleep(0.02)
        assert await status(core, dev, n.apns_id) is Status.DELIVERED


async def test_offline_then_reconnect_gets_backlog_in_priority_order(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    sent = [notification(dev, i, priority=p) for i, p in enumerate([5, 10, 1, 10, 5])]
    for n in sent:
        await core.engine.accept(n)
    await core.engine.flush()
    async with Inbox(url(server), dev) as inbox:
        await eventually(lambda: len(inbox.ids) == 5, what="backlog drained")
        # sorted() is stable: acceptance order within one priority
        want = [n.apns_id for n in sorted(sent, key=lambda n: -n.priority)]
        assert inbox.ids == want


async def test_collapse_expiry_and_expiration_zero_while_offline(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    now = int(time.time())
    old = notification(dev, 1, collapse_id="score")
    new = notification(dev, 2, collapse_id="score")
    expiring = notification(dev, 3, expiration=now + 1)
    once = notification(dev, 4, expiration=0)
    keep = notification(dev, 5, expiration=now + 3600)
    for n in (old, new, expiring, once, keep):
        await core.engine.accept(n)
    await core.engine.flush()
    assert await status(core, dev, old.apns_id) is Status.COLLAPSED
    for _ in range(100):
        if await status(core, dev, once.apns_id) is Status.DISCARDED:
            break
        await asyncio.sleep(0.02)
    assert await status(core, dev, once.apns_id) is Status.DISCARDED
    await asyncio.sleep(max(0.0, now + 2 - time.time()))  # past `expiring`'s deadline
    async with Inbox(url(server), dev) as inbox:
        await eventually(lambda: len(inbox.ids) >= 2, what="backlog drained")
        await asyncio.sleep(0.2)
        assert sorted(inbox.ids) == sorted([new.apns_id, keep.apns_id])


async def test_ghosting_in_one_shard_closes_the_older_socket(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    # A short backoff: a replaced client that reconnected would do it at once.
    first = DeviceClient(url(server), dev.device_id, dev.secret, backoff_min_s=0.05)
    first.start()
    await first.wait_connected()
    async with Inbox(url(server), dev) as second:
        await eventually(lambda: first.last_close_code == f.Close.REPLACED, what="older socket closed 4004")
        n = notification(dev, 9)
        await core.engine.accept(n)
        await eventually(lambda: second.ids == [n.apns_id])
        assert second.client.epoch > first.epoch
        # docs/protocol.md: after 4004 the replaced client does not reconnect (it
        # would take the device back from the newer connection, and so on).
        await asyncio.sleep(0.5)
        assert first.connects == 1
        assert first.fatal is not None and first.fatal.reason == "Replaced"
        assert second.client.connects == 1
    await first.stop()


async def test_register_unregister_and_topic_rules(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    async with Inbox(url(server), dev) as inbox:
        token = await inbox.client.register(BUNDLE + ".voip", "sandbox")
        rec = await core.store.get_token(token)
        assert rec is not None and rec.device_id == dev.device_id and rec.topic == BUNDLE + ".voip"
        with pytest.raises(DeviceError, match="TopicDisallowed"):
            await inbox.client.register("com.someone.else")
        other = await one_device(core)
        with pytest.raises(DeviceError, match="BadDeviceToken"):
            await inbox.client.unregister(other.token)
        at_ms = await inbox.client.unregister(token)
        rec = await core.store.get_token(token)
        assert rec is not None and not rec.active and at_ms > 0
        assert inbox.client.connected  # refused requests keep the socket open


async def test_bad_inputs_close_only_their_own_socket(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    async with Inbox(url(server), dev) as bystander:

        async def close_code(first: str | bytes) -> int:
            async with connect(url(server), compression=None, max_size=None) as ws:
                await ws.send(first)
                with pytest.raises(ConnectionClosed) as exc:
                    while True:
                        await ws.recv()
                assert exc.value.rcvd is not None
                return exc.value.rcvd.code

        bad_secret = json.dumps({"type": "hello", "device_id": dev.device_id, "secret": "wrong"})
        assert await close_code(bad_secret) == f.Close.BAD_CREDENTIAL
        assert await close_code("{not json") == f.Close.BAD_FRAME
        assert await close_code("x" * (server.cfg.ws_max_frame + 1)) == 1009
        n = notification(dev, 1)
        await core.engine.accept(n)
        await eventually(lambda: bystander.ids == [n.apns_id])
        assert bystander.client.connects == 1


async def test_clean_stop_sends_reconnect_and_1012(shard) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    async with connect(url(server), compression=None) as ws:
        await ws.send(json.dumps({"type": "hello", "device_id": dev.device_id, "secret": dev.secret}))
        welcome = f.decode_server(await ws.recv())
        assert isinstance(welcome, f.Welcome)
        await server.stop()
        hint = f.decode_server(await ws.recv())
        assert hint == f.Reconnect(delay_ms=server.cfg.reconnect_delay_ms)
        with pytest.raises(ConnectionClosed) as exc:
            await ws.recv()
        assert exc.value.rcvd is not None and exc.value.rcvd.code == 1012
    assert await core.presence.lookup([dev.device_id]) == [None]


async def test_a_failing_on_push_is_logged_acked_and_the_client_goes_on(shard, caplog) -> None:  # type: ignore[no-untyped-def]
    core, server = shard
    dev = await one_device(core)
    got: list[str] = []

    async def on_push(push: f.Push) -> None:
        got.append(push.apns_id)
        if len(got) == 1:
            raise RuntimeError("the app's own bug")

    client = DeviceClient(url(server), dev.device_id, dev.secret, on_push=on_push)
    client.start()
    try:
        await client.wait_connected(15)
        first, second = notification(dev, 1), notification(dev, 2)
        await core.engine.accept(first)
        await eventually(lambda: got == [first.apns_id], what="the first push reaches the failing handler")
        await core.engine.accept(second)
        await eventually(lambda: got == [first.apns_id, second.apns_id], what="the next push after the failure")
        for n in (first, second):  # the failed one is acked too: it is not redelivered forever
            await eventually_async(lambda n=n: status(core, dev, n.apns_id), Status.DELIVERED)
        assert client.handler_errors == 1 and client.connects == 1
        assert any("on_push raised" in r.getMessage() and r.exc_info for r in caplog.records)
    finally:
        await client.stop()


async def eventually_async(read, want, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (got := await read()) != want:
        assert time.monotonic() < deadline, f"timed out: {got} != {want}"
        await asyncio.sleep(0.02)
