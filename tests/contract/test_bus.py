"""Bus contract: the same behaviour from the Redis and the in-process backend.

Redis tests run against the throwaway server of scripts/with-test-services.sh;
the restart test stops and restarts that very server (and always leaves it
running).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from prometheus_client import REGISTRY

from gateway.bus.local import LocalBus
from gateway.bus.redis_bus import RedisBus

BusT = LocalBus | RedisBus


@pytest.fixture(params=["local", "redis"])
async def bus(request: pytest.FixtureRequest, redis_url: str) -> AsyncIterator[BusT]:
    b: BusT
    if request.param == "redis":
        b = RedisBus.from_url(redis_url)
    else:
        b = LocalBus()
    await b.start()
    yield b
    await b.close()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.resubscribed = 0

    def on_message(self, data: bytes) -> None:
        self.messages.append(data)

    async def on_resubscribed(self) -> None:
        self.resubscribed += 1


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_delivers_to_the_right_shard_only(bus: BusT) -> None:
    a, b = Inbox(), Inbox()
    await bus.subscribe("a", a.on_message, a.on_resubscribed)
    await bus.subscribe("b", b.on_message, b.on_resubscribed)
    for i in range(3):
        bus.publish("a", b"to-a-%d" % i)
    bus.publish("b", b"to-b")
    bus.publish("nobody", b"lost")
    await bus.flush()
    await wait_for(lambda: len(a.messages) == 3 and len(b.messages) == 1)
    await asyncio.sleep(0.1)  # give a stray message the time to arrive
    assert a.messages == [b"to-a-0", b"to-a-1", b"to-a-2"]
    assert b.messages == [b"to-b"]


async def test_publishes_of_one_tick_go_out_in_one_batch(bus: BusT) -> None:
    inbox = Inbox()
    await bus.subscribe("s1", inbox.on_message, inbox.on_resubscribed)
    before = bus.batches_sent
    pipelines: list[object] = []
    if isinstance(bus, RedisBus):
        # Count real pipelines built against the client, not only the counter.
        original = bus.client.pipeline

        def counting_pipeline(*args: object, **kwargs: object):
            pipe = original(*args, **kwargs)  # type: ignore[arg-type]
            pipelines.append(pipe)
            return pipe

        bus.client.pipeline = counting_pipeline  # type: ignore[method-assign]
    payloads = [b"m%d" % i for i in range(200)]
    for p in payloads:
        bus.publish("s1", p)  # all in the same tick: no await in between
    await bus.flush()
    assert bus.batches_sent - before == 1
    if isinstance(bus, RedisBus):
        assert len(pipelines) == 1
    await wait_for(lambda: len(inbox.messages) == 200)
    assert inbox.messages == payloads

    # A second tick is a second batch: coalescing is per tick, not forever.
    bus.publish("s1", b"later")
    await bus.flush()
    assert bus.batches_sent - before == 2


async def test_resubscribed_runs_after_the_first_subscription(bus: BusT) -> None:
    inbox = Inbox()
    await bus.subscribe("s2", inbox.on_message, inbox.on_resubscribed)
    await wait_for(lambda: inbox.resubscribed == 1)
    await asyncio.sleep(0.2)
    assert inbox.resubscribed == 1  # once, not per message or per poll


async def test_unsubscribe_stops_delivery(bus: BusT) -> None:
    inbox = Inbox()
    await bus.subscribe("s3", inbox.on_message, inbox.on_resubscribed)
    bus.publish("s3", b"one")
    await bus.flush()
    await wait_for(lambda: len(inbox.messages) == 1)
    await bus.unsubscribe("s3")
    bus.publish("s3", b"two")
    await bus.flush()
    await asyncio.sleep(0.2)
    assert inbox.messages == [b"one"]


def _dropped() -> float:
    return REGISTRY.get_sample_value("pushgw_bus_dropped_total") or 0.0


async def test_redis_publish_never_raises_when_redis_is_unreachable() -> None:
    # Port 1 on loopback: nothing listens, connect is refused at once.
    bus = RedisBus.from_url("redis://127.0.0.1:1/0")
    await bus.start()
    before = _dropped()
    try:
        bus.publish("x", b"doorbell")  # must not raise
        await bus.flush()  # nor here
        assert _dropped() - before == 1
    finally:
        await bus.close()


def _redis_ctl(action: str) -> None:
    port = os.environ["TEST_REDIS_PORT"]
    if action == "stop":
        subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False, capture_output=True)
        return
    rdir = os.environ["TEST_REDIS_DIR"]
    subprocess.run(
        [
            os.environ["TEST_REDIS_BIN"],
            "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--daemonize", "yes", "--pidfile", f"{rdir}/redis.pid", "--dir", rdir, "--logfile", f"{rdir}/log",
        ],
        check=True,
    )  # fmt: skip


async def _redis_up(url: str, up: bool, timeout: float = 10.0) -> None:
    client = aioredis.Redis.from_url(url)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        while True:
            try:
                await client.ping()
                state = True
            except (OSError, aioredis.ConnectionError):
                state = False
            if state == up:
                return
            if loop.time() > deadline:
                raise AssertionError(f"redis did not become {'up' if up else 'down'}")
            await asyncio.sleep(0.05)
    finally:
        await client.aclose()


async def test_redis_subscriber_survives_a_restart_and_calls_resubscribed(redis_url: str) -> None:
    bus = RedisBus.from_url(redis_url)
    await bus.start()
    inbox = Inbox()
    try:
        await bus.subscribe("r", inbox.on_message, inbox.on_resubscribed)
        await wait_for(lambda: inbox.resubscribed == 1)
        try:
            _redis_ctl("stop")
            await _redis_up(redis_url, up=False)
            await asyncio.sleep(1.5)  # long enough for the subscriber to notice
        finally:
            _redis_ctl("start")
            await _redis_up(redis_url, up=True)
        await wait_for(lambda: inbox.resubscribed >= 2, timeout=20)
        bus.publish("r", b"after-restart")
        await bus.flush()
        await wait_for(lambda: b"after-restart" in inbox.messages)
    finally:
        await bus.close()
