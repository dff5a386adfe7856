"""Webhook delivery from the durable outbox (at least once, signed, with a dead letter).

Signature: ``X-Pushgw-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>``
with ``X-Pushgw-Timestamp: <unix seconds>`` (the Stripe scheme: the timestamp
is signed too, so a receiver can refuse replays older than a few minutes).
A job is retried with exponential backoff and jitter until it is answered
2xx; after ``max_attempts`` failures it is dead-lettered (state ``dead``)
and stays visible in ``GET /api/v1/webhooks/deliveries``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import random
import socket
import time
from typing import Any

import aiohttp
from prometheus_client import Counter

from gateway.store.base import Store, WebhookJob
from schemas.errors import StoreUnavailable

log = logging.getLogger("pushgw.webhooks")

SIGNATURE_HEADER = "X-Pushgw-Signature"
TIMESTAMP_HEADER = "X-Pushgw-Timestamp"

ATTEMPTS = Counter("pushgw_webhook_attempts_total", "Webhook delivery attempts", ["result"])  # ok | failed | dead
_RESULT = {r: ATTEMPTS.labels(r) for r in ("ok", "failed", "dead")}


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify(secret: str, timestamp: int, body: bytes, signature: str, *, now_s: float, tolerance_s: int = 300) -> bool:
    """What a receiver does: constant-time compare, and refuse stale timestamps."""
    if abs(now_s - timestamp) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def backoff_ms(failures: int, base_s: float, max_s: float) -> int:
    ceiling = min(max_s, base_s * (2 ** min(failures, 30)))
    return int((ceiling / 2 + random.uniform(0, ceiling / 2)) * 1000)


class WebhookWorker:
    def __init__(
        self,
        store: Store,
        *,
        worker_id: str | None = None,
        max_attempts: int = 8,
        backoff_base_s: float = 5.0,
        backoff_max_s: float = 3600.0,
        timeout_s: float = 10.0,
        batch: int = 50,
        lease_ms: int = 60_000,
        poll_interval_s: float = 1.0,
    ) -> None:
        self.store = store
        self.worker_id = worker_id or f"webhooks-{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self.batch = batch
        self.lease_ms = lease_ms
        self.poll_interval_s = poll_interval_s
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def run_once(self, now_ms: int | None = None) -> int:
        """Deliver the due jobs of one claim; returns how many were attempted."""
        now_ms = now_ms if now_ms is not None else int(time.time() * 1000)
        jobs = await self.store.claim_webhooks(self.worker_id, self.batch, now_ms, self.lease_ms)
        await asyncio.gather(*(self._deliver(job) for job in jobs))
        return len(jobs)

    async def _run(self) -> None:
        while True:
            try:
                n = await self.run_once()
            except StoreUnavailable:
                log.warning("webhooks: store unavailable; retrying")
                n = 0
            except Exception:
                log.exception("webhooks: delivery round failed")
                n = 0
            if n < self.batch:
                await asyncio.sleep(self.poll_interval_s)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    async def _deliver(self, job: WebhookJob) -> None:
        hook = await self.store.get_webhook(job.app_id)
        if hook is None:
            _RESULT["dead"].inc()
            await self.store.finish_webhook(job.id, False, "no webhook configured", None)
            return
        url, secret = hook
        ts = int(time.time())
        headers: dict[str, Any] = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(secret, ts, job.body),
            "X-Pushgw-Delivery": str(job.id),  # receivers dedupe at-least-once deliveries by this
        }
        error: str | None = None
        try:
            async with self._client().post(url, data=job.body, headers=headers, allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    _RESULT["ok"].inc()
                    await self.store.finish_webhook(job.id, True, None, None)
                    return
                error = f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        if job.attempts + 1 >= self.max_attempts:
            _RESULT["dead"].inc()
            await self.store.finish_webhook(job.id, False, error, None)
        else:
            _RESULT["failed"].inc()
            next_ms = int(time.time() * 1000) + backoff_ms(job.attempts, self.backoff_base_s, self.backoff_max_s)
            await self.store.finish_webhook(job.id, False, error, next_ms)
