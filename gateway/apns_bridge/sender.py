"""The durable relay worker: store rows of kind ``apns`` -> Apple.

A notification is committed before it is relayed (DESIGN.md promise 1).
Senders claim leased rows (``claim_relay``: SKIP LOCKED on PostgreSQL); a
sender that dies simply lets its leases run out and another sender picks the
rows up.  Every attempt carries the row's own apns-id, so Apple (and the app
that reads Apple's delivery log) sees one id per notification.

Outcomes, by Apple's answer (shared/APNS.md section 4 retry rules):
* 200                           -> ``relayed`` with apns-unique-id (sandbox) or apns-id
* 410 / BadDeviceToken / DeviceTokenNotForTopic -> token unregistered with
  Apple's timestamp, feedback + webhook, ``rejected`` with the reason
* ExpiredProviderToken          -> mint a fresh JWT once, send again at once
* 429, 500, 503, lost connection, deadline -> ``retry_relay`` with exponential
  backoff and jitter (in-process attempt counts; a restarted sender starts
  again at the short delays, which errs on the side of trying)
* GOAWAY above last_stream_id / REFUSED_STREAM -> never processed: resent at once
* anything else                 -> ``rejected`` with the reason, never retried
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.apns_bridge import metrics
from gateway.apns_bridge.client import APNsResponse, Header, OutcomeUnknown, StreamRefused
from gateway.apns_bridge.invalidation import token_invalidated
from gateway.apns_bridge.keyvault import KeyVault, VaultError
from gateway.apns_bridge.pool import PoolRegistry, make_ssl_context
from gateway.apns_bridge.signer import ProviderTokenSigner
from gateway.store.base import Store
from schemas.errors import StoreUnavailable
from schemas.notification import StoredNotification

log = logging.getLogger("pushgw.bridge")

INVALID_TOKEN = frozenset({"Unregistered", "ExpiredToken", "BadDeviceToken", "DeviceTokenNotForTopic"})
TEMPORARY_STATUS = frozenset({429, 500, 502, 503, 504})
TEMPORARY_REASON = frozenset({"IdleTimeout", "TooManyProviderTokenUpdates", "TooManyRequests"})

InvalidTokenHook = Callable[[Store, int, str, str, int], Awaitable[None]]


def classify(resp: APNsResponse) -> str:
    """'relayed' | 'invalid_token' | 'refresh' | 'retry' | 'rejected' (pure)."""
    if resp.status == 200:
        return "relayed"
    reason = resp.reason or ""
    if reason in INVALID_TOKEN or resp.status == 410:
        return "invalid_token"
    if reason == "ExpiredProviderToken":
        return "refresh"
    if resp.status in TEMPORARY_STATUS or reason in TEMPORARY_REASON:
        return "retry"
    return "rejected"


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with 'equal jitter': half fixed, half random."""
    ceiling = min(max_s, base_s * (2 ** min(attempt, 30)))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def build_headers(authority: str, row: StoredNotification, bearer: str) -> list[Header]:
    h: list[Header] = [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", authority.encode()),
        (b":path", b"/3/device/" + row.token.encode()),
        (b"authorization", b"bearer " + bearer.encode()),
        (b"apns-id", row.apns_id.encode()),
        (b"apns-topic", row.topic.encode()),
        (b"apns-push-type", row.push_type.encode()),
        (b"apns-priority", str(row.priority).encode()),
    ]
    if row.expiration is not None:
        h.append((b"apns-expiration", str(row.expiration).encode()))
    if row.collapse_id:
        h.append((b"apns-collapse-id", row.collapse_id.encode()))
    return h


class BridgeSender:
    """``await start()`` runs the claim/send loop in a task; ``await stop()`` ends it."""

    def __init__(
        self,
        cfg: Any,
        store: Store,
        keys: KeyVault | None = None,
        *,
        worker_id: str | None = None,
        batch: int = 200,
        concurrency: int = 1000,
        lease_ms: int = 120_000,
        request_timeout_s: float = 10.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 900.0,
        poll_interval_s: float = 0.1,
        max_connections: int = 4,
        ssl_ctx: ssl.SSLContext | None = None,
        on_invalid_token: InvalidTokenHook = token_invalidated,
        clock: Callable[[], float] = time.time,
        store_concurrency: int = 8,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self._keys = keys
        self.worker_id = worker_id or f"bridge-{socket.gethostname()}-{os.getpid()}-{id(self):x}"
        self.batch = batch
        self.concurrency = concurrency
        self.lease_ms = lease_ms
        self.timeout = request_timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.poll_interval_s = poll_interval_s
        self._clock = clock
        self._on_invalid = on_invalid_token
        hosts = {"production": cfg.apns_production_host, "sandbox": cfg.apns_sandbox_host}
        self.pools = PoolRegistry(
            hosts,
            cfg.apns_port,
            ssl_ctx if ssl_ctx is not None else make_ssl_context(cfg.apns_ca_file),
            max_connections=max_connections,
        )
        self._signers: dict[int, ProviderTokenSigner] = {}
        self._envs: dict[str, str] = {}  # token -> environment (never changes for a token)
        self._attempts: dict[int, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        # Thousands of streams may finish at once; the store's connection pool
        # is far smaller, so bound our writes instead of timing out on it.
        self._store_sem = asyncio.Semaphore(store_concurrency)

    # -- lifecycle ---------------------------------------------------------------

    @property
    def keys(self) -> KeyVault:
        if self._keys is None:  # built lazily: an install without a secret never relays
            self._keys = KeyVault.from_config(self.cfg)
        return self._keys

    async def start(self) -> None:
        self._stopping = False
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop claiming, let in-flight sends finish (up to ``grace_s``), close pools."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_s)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pools.close()

    async def crash(self) -> None:
        """Test hook: die like a killed process (no finish, no retry, sockets aborted)."""
        self._stopping = True
        for task in [*self._tasks, *([self._loop_task] if self._loop_task else [])]:
            task.cancel()
        for pool in list(self.pools._pools.values()):
            for conn in pool.connections:
                conn.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_once(self) -> int:
        """Claim one batch and relay it to the end; returns the number claimed."""
        rows = await self.store.claim_relay(self.worker_id, self.batch, self.lease_ms)
        await asyncio.gather(*(self._relay(row) for row in rows))
        return len(rows)

    async def _run(self) -> None:
        while not self._stopping:
            room = self.concurrency - len(self._tasks)
            if room < min(self.batch, self.concurrency) // 2 or room <= 0:
                await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                rows = await self.store.claim_relay(self.worker_id, min(self.batch, room), self.lease_ms)
            except StoreUnavailable:
                log.warning("bridge: store unavailable; retrying")
                await asyncio.sleep(1.0)
                continue
            except Exception:
                log.exception("bridge: claim failed")
                await asyncio.sleep(1.0)
                continue
            for row in rows:
                task = asyncio.get_running_loop().create_task(self._relay(row))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not rows:
                await asyncio.sleep(self.poll_interval_s)

    # -- one notification ----------------------------------------------------------

    async def _relay(self, row: StoredNotification) -> None:
        try:
            resp = await self._send(row)
            async with self._store_sem:
                await self._finish(row, resp)
        except StoreUnavailable:
            # The lease runs out and the row is claimed again later.
            log.warning("bridge: store unavailable while finishing %s", row.apns_id)
        except Exception:
            log.exception("bridge: relaying %s failed", row.apns_id)
            with contextlib.suppress(Exception):
                await self._retry(row)

    async def _send(self, row: StoredNotification) -> APNsResponse | str | None:
        """Apple's answer; a reason string to reject without sending; None to retry later."""
        signer = await self._signer(row.app_id)
        if signer is None:
            return "MissingProviderToken"
        async with self._store_sem:
            env = await self._environment(row.token)
        if env is None:
            return "BadDeviceToken"
        pool = self.pools.pool(signer.team_id, signer.key_id, env)
        bearer = signer.token()
        refreshed = False
        refused = 0
        while True:
            started = time.monotonic()
            try:
                resp = await pool.request(build_headers(pool.host, row, bearer), row.payload, self.timeout)
            except StreamRefused:
                metrics.outcome("refused")
                refused += 1
                if refused <= 3:
                    continue  # Apple never saw it: resending is safe
                return None
            except OutcomeUnknown:
                # Maybe delivered: not resent at once, but later with the same apns-id.
                metrics.outcome("unknown")
                return None
            metrics.observe(time.monotonic() - started)
            if classify(resp) == "refresh" and not refreshed:
                refreshed = True
                metrics.token_refresh()
                bearer = signer.expired(bearer)
                continue
            return resp

    async def _finish(self, row: StoredNotification, resp: APNsResponse | str | None) -> None:
        if resp is None:
            await self._retry(row)
            return
        if isinstance(resp, str):
            metrics.outcome("rejected")
            await self.store.finish_relay(row.id, "rejected", resp)
            return
        kind = classify(resp)
        metrics.outcome(kind)
        if kind == "relayed":
            self._attempts.pop(row.id, None)
            await self.store.finish_relay(row.id, "relayed", None, resp.unique_id or resp.apns_id)
        elif kind == "invalid_token":
            self._attempts.pop(row.id, None)
            reason = resp.reason or "Unregistered"
            at_ms = resp.timestamp_ms or int(self._clock() * 1000)
            await self.store.unregister_token(row.token, at_ms)
            await self._on_invalid(self.store, row.app_id, row.token, reason, at_ms)
            await self.store.finish_relay(row.id, "rejected", reason)
        elif kind == "retry" or kind == "refresh":
            await self._retry(row)
        else:
            self._attempts.pop(row.id, None)
            await self.store.finish_relay(row.id, "rejected", resp.reason or f"HTTP{resp.status}")

    async def _retry(self, row: StoredNotification) -> None:
        attempt = self._attempts.get(row.id, 0)
        self._attempts[row.id] = attempt + 1
        delay = backoff_s(attempt, self.backoff_base_s, self.backoff_max_s)
        await self.store.retry_relay(row.id, int((self._clock() + delay) * 1000))

    async def _signer(self, app_id: int) -> ProviderTokenSigner | None:
        try:
            creds = self.keys.get(app_id)
        except VaultError:
            log.exception("bridge: key vault")
            return None
        if creds is None:
            return None
        signer = self._signers.get(app_id)
        if signer is None or (signer.team_id, signer.key_id) != (creds.team_id, creds.key_id):
            signer = ProviderTokenSigner(creds.team_id, creds.key_id, creds.p8_pem, clock=self._clock)
            self._signers[app_id] = signer
        return signer

    async def _environment(self, token: str) -> str | None:
        env = self._envs.get(token)
        if env is None:
            record = await self.store.get_token(token)
            if record is None:
                return None
            env = record.environment.value
            if len(self._envs) > 100_000:
                self._envs.clear()
            self._envs[token] = env
        return env
