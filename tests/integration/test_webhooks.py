"""Webhook outbox delivery to a real local aiohttp receiver (PostgreSQL store)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from feedback.records import token_invalidated
from feedback.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, WebhookWorker, sign, verify
from tests.integration.bridge_fixtures import TEAM, make_store

SECRET = "0123456789abcdef-secret"


class Receiver:
    def __init__(self, fail_first: int) -> None:
        self.fail_first = fail_first
        self.calls: list[tuple[bool, bytes, str | None]] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ts = int(request.headers[TIMESTAMP_HEADER])
        ok_sig = verify(SECRET, ts, body, request.headers[SIGNATURE_HEADER], now_s=time.time())
        self.calls.append((ok_sig, body, request.headers.get("X-Pushgw-Delivery")))
        if len(self.calls) <= self.fail_first:
            return web.Response(status=503)
        return web.Response(status=204)


@pytest.fixture
async def store(tmp_path, pg_dsn):  # type: ignore[no-untyped-def]
    from gateway.config import Config

    s = await make_store(Config(data_dir=str(tmp_path), database_url=pg_dsn))
    yield s
    await s.close()


async def serve(receiver: Receiver) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"


def test_signature_scheme() -> None:
    sig = sign("k", 100, b"{}")
    assert verify("k", 100, b"{}", sig, now_s=100)
    assert not verify("k", 100, b"{ }", sig, now_s=100)  # body tampered
    assert not verify("other", 100, b"{}", sig, now_s=100)
    assert not verify("k", 100, b"{}", sig, now_s=100 + 3600)  # replayed later


async def drive(worker: WebhookWorker, until, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await until():
        assert time.monotonic() < deadline, "timed out"
        await worker.run_once()
        await asyncio.sleep(0.01)


async def test_retried_until_delivered_signed(store) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver(fail_first=3)
    runner, url = await serve(receiver)
    await store.create_team(TEAM, "t")
    app = await store.create_app(TEAM, "com.example.hooks")
    await store.set_webhook(app.app_id, url, SECRET)
    await token_invalidated(store, app.app_id, "ab" * 32, "Unregistered", 42)
    worker = WebhookWorker(store, backoff_base_s=0.01, backoff_max_s=0.05, max_attempts=10)
    try:
        await drive(worker, lambda: _state(store, app.app_id, "delivered"))
    finally:
        await worker.stop()
        await runner.cleanup()
    assert len(receiver.calls) == 4
    assert all(ok for ok, _, _ in receiver.calls)  # every attempt correctly signed
    assert len({d for _, _, d in receiver.calls}) == 1  # same delivery id each time
    assert b'"reason":"Unregistered"' in receiver.calls[0][1]
    job = (await store.list_webhook_jobs(app.app_id))[0]
    assert job.state == "delivered" and job.attempts == 3


async def test_dead_letter_after_max_attempts(store) -> None:  # type: ignore[no-untyped-def]
    receiver = Receiver(fail_first=1000)
    runner, url = await serve(receiver)
    await store.create_team(TEAM, "t")
    app = await store.create_app(TEAM, "com.example.dead")
    await store.set_webhook(app.app_id, url, SECRET)
    await token_invalidated(store, app.app_id, "cd" * 32, "BadDeviceToken", 42)
    worker = WebhookWorker(store, backoff_base_s=0.01, backoff_max_s=0.02, max_attempts=4)
    try:
        await drive(worker, lambda: _state(store, app.app_id, "dead"))
        for _ in range(5):  # a dead job is never claimed again
            await worker.run_once()
    finally:
        await worker.stop()
        await runner.cleanup()
    assert len(receiver.calls) == 4
    job = (await store.list_webhook_jobs(app.app_id, "dead"))[0]
    assert job.last_error == "HTTP 503"


async def _state(store, app_id: int, state: str) -> bool:  # type: ignore[no-untyped-def]
    jobs = await store.list_webhook_jobs(app_id, state)
    return bool(jobs)
