"""The durable relay worker: store rows of kind ``apns`` -> Apple.

A notification is committed before it is relayed (DESIGN.md promise 1).
Senders claim leased rows (``claim_relay``: SKIP LOCKED on PostgreSQL); a
sender that dies simply lets its leases run out and another sender picks the
rows up.  Every attempt carries the row's own apns-id, so Apple (and the app
that reads Apple's delivery log) sees one id per notification.

Outcomes, by Apple's answer (shared/APNS.md section 4 retry rules):
* 200                           -> ``relayed`` with apns-unique-id (sandbox) or apns-id
* 410 / DeviceTokenNotForTopic -> token unregistered with Apple's timestamp
  (later pushes get 410), BadDeviceToken -> token forgotten (later pushes get
  400 BadDeviceToken, as from Apple); feedback + webhook, ``rejected`` with the reason
* ExpiredProviderToken          -> mint a fresh JWT once, send again at once
* 429, 500, 503, lost connection, deadline -> rescheduled with exponential
  backoff and jitter; the store counts attempts (one per claim), so a
  restarted sender keeps the schedule, and after ``max_attempts`` the row is
  ``rejected`` with Apple's last reason (``RetriesExhausted`` if Apple never
  answered)
* GOAWAY above last_stream_id / REFUSED_STREAM -> never processed: resent at once
* anything else                 -> ``rejected`` with the reason, never retried

Throughput: claims come in batches into an in-flight window several times
the pool's stream slots, and outcomes are written in batches
(``OutcomeBatcher``), so the store costs a few statements per batch instead
of one transaction per notification.
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
from gateway.apns_bridge.certauth import client_context
from gateway.apns_bridge.client import APNsResponse, OutcomeUnknown, RequestHeader, StreamRefused
from gateway.apns_bridge.invalidation import token_invalidated
from gateway.apns_bridge.keyvault import CertificateCredentials, KeyVault, VaultError
from gateway.apns_bridge.outcomes import OutcomeBatcher
from gateway.apns_bridge.pool import ConnectionPool, PoolRegistry, make_ssl_context
from gateway.apns_bridge.signer import ProviderTokenSigner
from gateway.store.base import RelayClaim, Store
from schemas.errors import StoreUnavailable
from schemas.notification import StoredNotification

log = logging.getLogger("pushgw.bridge")

INVALID_TOKEN = frozenset({"Unregistered", "ExpiredToken", "BadDeviceToken", "DeviceTokenNotForTopic"})
TEMPORARY_STATUS = frozenset({429, 500, 502, 503, 504})
TEMPORARY_REASON = frozenset({"IdleTimeout", "TooManyProviderTokenUpdates", "TooManyRequests"})

InvalidTokenHook = Callable[[Store, int, str, str, int], Awaitable[None]]
MAX_ATTEMPTS = 12  # with 1 s .. 15 min backoff: about an hour of trying
GAVE_UP = "RetriesExhausted"  # the reason when Apple never answered the last attempt
AUTH_RECHECK_S = 5.0  # how long a vault lookup is trusted (the admin may rotate keys)


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


def build_headers(authority: str, row: StoredNotification, bearer: str | None) -> list[RequestHeader]:
    """Request headers; ``bearer`` None for certificate authentication (no authorization header)."""
    # Values that never repeat (the apns-id; the path, nearly) are sent as
    # never-indexed literals (3-tuples): adding them to the HPACK table would
    # only evict the headers that do repeat and lengthen every table search.
    h: list[RequestHeader] = [
        (b":method", b"POST"),
        (b":scheme", b"https"),
        (b":authority", authority.encode()),
        (b":path", b"/3/device/" + row.token.encode(), True),
    ]
    if bearer is not None:
        h.append((b"authorization", b"bearer " + bearer.encode()))
    h += [
        (b"apns-id", row.apns_id.encode(), True),
        (b"apns-topic", row.topic.encode()),
        (b"apns-push-type", row.push_type.encode()),
        (b"apns-priority", str(row.priority).encode()),
    ]
    if row.expiration is not None:
        h.append((b"apns-expiration", str(row.expiration).encode()))
    if row.collapse_id:
        h.append((b"apns-collapse-id", row.collapse_id.encode()))
    return h


class _CertAuth:
    """A client certificate: its own TLS context, hence its own pools."""

    def __init__(self, creds: CertificateCredentials, ca_file: str) -> None:
        self.fingerprint = creds.fingerprint
        self.ssl_ctx = client_context(ca_file, creds.cert_pem, creds.key_pem)


class BridgeSender:
    """``await start()`` runs the claim/send loop in a task; ``await stop()`` ends it."""

    def __init__(
        self,
        cfg: Any,
        store: Store,
        keys: KeyVault | None = None,
        *,
        worker_id: str | None = None,
        batch: int = 500,
        concurrency: int = 4000,
        lease_ms: int = 120_000,
        request_timeout_s: float = 10.0,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 900.0,
        max_attempts: int | None = None,
        poll_interval_s: float = 0.1,
        max_connections: int = 4,
        ssl_ctx: ssl.SSLContext | None = None,
        on_invalid_token: InvalidTokenHook = token_invalidated,
        clock: Callable[[], float] = time.time,
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
        self.max_attempts: int = max_attempts or getattr(cfg, "apns_max_attempts", None) or MAX_ATTEMPTS
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
        self.outcomes = OutcomeBatcher(store)
        self._signers: dict[int, ProviderTokenSigner] = {}
        self._certs: dict[str, _CertAuth] = {}  # fingerprint -> TLS context
        self._auth: dict[int, tuple[float, ProviderTokenSigner | _CertAuth | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False

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
        """Stop claiming, let in-flight sends finish (up to ``grace_s``), write their outcomes, close pools."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_s)
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.outcomes.close()
        await self.pools.close()

    async def crash(self) -> None:
        """Test hook: die like a killed process (no finish, no retry, sockets aborted)."""
        self._stopping = True
        for task in [*self._tasks, *([self._loop_task] if self._loop_task else [])]:
            task.cancel()
        await self.outcomes.abort()
        for pool in list(self.pools._pools.values()):
            for conn in pool.connections:
                conn.abort()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_once(self) -> int:
        """Claim one batch and relay it to the end; returns the number claimed."""
        claims = await self.store.claim_relay_batch(self.worker_id, self.batch, self.lease_ms)
        await asyncio.gather(*(self._relay(claim) for claim in claims))
        return len(claims)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._stopping:
            room = self.concurrency - len(self._tasks)
            if room < min(self.batch, self.concurrency) // 2 or room <= 0:
                await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                claims = await self.store.claim_relay_batch(self.worker_id, min(self.batch, room), self.lease_ms)
            except StoreUnavailable:
                log.warning("bridge: store unavailable; retrying")
                await asyncio.sleep(1.0)
                continue
            except Exception:
                log.exception("bridge: claim failed")
                await asyncio.sleep(1.0)
                continue
            for claim in claims:
                task = loop.create_task(self._relay(claim))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            if not claims:
                await asyncio.sleep(self.poll_interval_s)

    # -- one notification ----------------------------------------------------------

    async def _relay(self, claim: RelayClaim) -> None:
        row = claim.row
        try:
            if claim.attempts > self.max_attempts:
                # Claimed again and again without an outcome (its senders died): give up.
                metrics.outcome("rejected")
                await self.outcomes.finish((row.id, "rejected", GAVE_UP, None))
                return
            resp = await self._send(claim)
            await self._finish(claim, resp)
        except StoreUnavailable:
            # The lease runs out and the row is claimed again later.
            log.warning("bridge: store unavailable while finishing %s", row.apns_id)
        except Exception:
            log.exception("bridge: relaying %s failed", row.apns_id)
            with contextlib.suppress(Exception):
                await self._retry(claim, None)

    async def _send(self, claim: RelayClaim) -> APNsResponse | str | None:
        """Apple's answer; a reason string to reject without sending; None to retry later."""
        row = claim.row
        auth = self._auth_for(row.app_id)
        if auth is None:
            return "MissingProviderToken"
        env = claim.environment
        if env is None:
            return "BadDeviceToken"
        pool: ConnectionPool
        signer: ProviderTokenSigner | None
        if isinstance(auth, _CertAuth):
            signer, bearer = None, None
            pool = self.pools.pool("cert", auth.fingerprint, env, auth.ssl_ctx)
        else:
            signer = auth
            bearer = signer.token()
            pool = self.pools.pool(signer.team_id, signer.key_id, env)
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
            if classify(resp) == "refresh" and not refreshed and signer is not None and bearer is not None:
                refreshed = True
                metrics.token_refresh()
                bearer = signer.expired(bearer)
                continue
            return resp

    async def _finish(self, claim: RelayClaim, resp: APNsResponse | str | None) -> None:
        row = claim.row
        if resp is None:
            await self._retry(claim, None)
            return
        if isinstance(resp, str):
            metrics.outcome("rejected")
            await self.outcomes.finish((row.id, "rejected", resp, None))
            return
        kind = classify(resp)
        metrics.outcome(kind)
        if kind == "relayed":
            metrics.relayed_after(self._clock() - row.accepted_at_ms / 1000)
            await self.outcomes.finish((row.id, "relayed", None, resp.unique_id or resp.apns_id))
        elif kind == "invalid_token":
            reason = resp.reason or "Unregistered"
            at_ms = resp.timestamp_ms or int(self._clock() * 1000)
            if reason == "BadDeviceToken":
                # Not a token at all: forgotten, so our API answers 400
                # BadDeviceToken for it, as Apple does (not 410).
                await self.store.forget_apns_token(row.token)
            else:
                await self.store.unregister_token(row.token, at_ms)
            await self._on_invalid(self.store, row.app_id, row.token, reason, at_ms)
            await self.outcomes.finish((row.id, "rejected", reason, None))
        elif kind == "retry" or kind == "refresh":
            await self._retry(claim, resp.reason or f"HTTP{resp.status}")
        else:
            await self.outcomes.finish((row.id, "rejected", resp.reason or f"HTTP{resp.status}", None))

    async def _retry(self, claim: RelayClaim, reason: str | None) -> None:
        """Try again later, or give up after ``max_attempts`` (counted by the store)."""
        if claim.attempts >= self.max_attempts:
            metrics.outcome("rejected")
            await self.outcomes.finish((claim.row.id, "rejected", reason or GAVE_UP, None))
            return
        delay = backoff_s(claim.attempts - 1, self.backoff_base_s, self.backoff_max_s)
        await self.outcomes.retry(claim.row.id, int((self._clock() + delay) * 1000))

    def _auth_for(self, app_id: int) -> ProviderTokenSigner | _CertAuth | None:
        """The app's signer or certificate, from the vault at most every few seconds.

        The vault checks its file on every read (a syscall); per notification
        that was a visible cost, and keys change rarely.
        """
        now = time.monotonic()
        cached = self._auth.get(app_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            creds = self.keys.get(app_id)
        except VaultError:
            log.exception("bridge: key vault")
            creds = None
        auth: ProviderTokenSigner | _CertAuth | None = None
        if isinstance(creds, CertificateCredentials):
            cert = self._certs.get(creds.fingerprint)
            if cert is None:
                cert = self._certs[creds.fingerprint] = _CertAuth(creds, self.cfg.apns_ca_file)
            auth = cert
        elif creds is not None:
            signer = self._signers.get(app_id)
            if signer is None or (signer.team_id, signer.key_id) != (creds.team_id, creds.key_id):
                signer = ProviderTokenSigner(creds.team_id, creds.key_id, creds.p8_pem, clock=self._clock)
                self._signers[app_id] = signer
            auth = signer
        self._auth[app_id] = (now + AUTH_RECHECK_S, auth)
        return auth
