"""The durable store: the one source of truth for pushgw.

Two backends implement this protocol (``PostgresStore``, ``SqliteStore``)
and one contract suite (tests/contract/test_store.py) runs against both.
Every method translates its driver's connection errors into
``schemas.errors.StoreUnavailable`` so callers can answer 503.

Times are integer milliseconds since the epoch unless named ``*_s``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import msgspec

from schemas.notification import (
    AcceptResult,
    Environment,
    Notification,
    NotificationStatus,
    StoredNotification,
    TokenKind,
)
from schemas.quiet_hours import QuietHours

if TYPE_CHECKING:
    from gateway.store.sessions_store import DeviceConnect


class Team(msgspec.Struct, frozen=True, kw_only=True):
    team_id: str  # 10-char Apple-style team id
    name: str


class App(msgspec.Struct, frozen=True, kw_only=True):
    app_id: int
    team_id: str
    bundle_id: str  # the apns-topic base
    name: str = ""


class ProviderKey(msgspec.Struct, frozen=True, kw_only=True):
    key_id: str  # 10-char kid
    team_id: str
    public_key_pem: str
    revoked: bool = False


class ApiKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    key_prefix: str  # first 8 chars, shown in listings; the rest is hashed
    app_id: int
    created_at_ms: int


class Device(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    app_id: int
    user_id: str | None
    created_at_ms: int


class DeviceToken(msgspec.Struct, frozen=True, kw_only=True):
    token: str  # lowercase hex
    app_id: int
    device_id: str | None  # None for kind apns tokens without a pushgw device
    topic: str  # bundle id (plus push-type suffix where applicable)
    environment: Environment
    kind: TokenKind
    active: bool
    invalidated_at_ms: int | None  # set when unregistered / rejected by Apple
    user_id: str | None = None


class FeedbackRecord(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    app_id: int
    token: str
    reason: str  # Unregistered | DeviceDeleted | BadDeviceToken | DeviceTokenNotForTopic | ...
    at_ms: int


class WebhookJob(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    app_id: int
    body: bytes
    state: str  # pending | delivered | dead
    attempts: int
    next_attempt_ms: int
    last_error: str | None
    created_at_ms: int


class RelayClaim(msgspec.Struct, frozen=True, kw_only=True):
    """A leased kind-apns row as the bridge needs it (``claim_relay_batch``)."""

    row: StoredNotification
    attempts: int  # claims of this row so far, this one included
    environment: str | None  # of its token; None if the token record is gone


# (id, "relayed" | "rejected", reason, Apple's id) for ``finish_relay_many``.
RelayOutcome = tuple[int, str, str | None, str | None]


class Store(Protocol):
    # -- lifecycle -----------------------------------------------------------
    async def open(self) -> None:
        """Connect and run pending migrations."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreUnavailable if the store cannot answer."""

    # -- tenants and credentials ----------------------------------------------
    async def create_team(self, team_id: str, name: str) -> Team: ...

    async def create_app(self, team_id: str, bundle_id: str, name: str = "") -> App: ...

    async def get_app(self, app_id: int) -> App | None: ...

    async def get_app_by_bundle(self, bundle_id: str) -> App | None: ...

    async def list_apps(self, team_id: str | None = None) -> list[App]: ...

    async def add_provider_key(self, team_id: str, key_id: str, public_key_pem: str) -> ProviderKey: ...

    async def get_provider_key(self, key_id: str) -> ProviderKey | None: ...

    async def revoke_provider_key(self, key_id: str) -> None: ...

    async def create_api_key(self, app_id: int) -> str:
        """Return a new plaintext API key; only its hash is stored."""

    async def verify_api_key(self, plaintext: str) -> App | None:
        """Constant-time check; the app the key belongs to, or None."""

    # -- devices and tokens ----------------------------------------------------
    async def create_device(self, app_id: int, user_id: str | None = None) -> tuple[Device, str]:
        """Create a device; returns it and its plaintext secret (stored hashed)."""

    async def authenticate_device(self, device_id: str, secret: str) -> Device | None: ...

    async def get_device(self, device_id: str) -> Device | None: ...

    async def delete_device(self, device_id: str) -> list[DeviceToken]:
        """Delete the device; its tokens become inactive. Returns them."""

    async def issue_token(self, device_id: str, topic: str, environment: Environment) -> DeviceToken:
        """A new random 32-byte token (64 hex) of kind local, bound to topic+env."""

    async def register_apns_token(
        self,
        app_id: int,
        token: str,
        topic: str,
        environment: Environment,
        user_id: str | None = None,
    ) -> DeviceToken:
        """Register (or re-activate) a real iPhone token, kind apns."""

    async def get_token(self, token: str) -> DeviceToken | None: ...

    async def get_tokens(self, tokens: Sequence[str]) -> dict[str, DeviceToken]:
        """The records of those tokens (lowercase hex) that exist, in one read;
        unknown tokens are absent from the answer."""

    async def unregister_token(self, token: str, at_ms: int | None = None) -> int | None:
        """Mark inactive; returns the invalidation timestamp (ms), None if unknown."""

    async def list_device_tokens(self, device_id: str) -> list[DeviceToken]: ...

    async def list_user_tokens(self, app_id: int, user_id: str) -> list[DeviceToken]: ...

    # -- subscriptions (fan-out) ----------------------------------------------
    async def subscribe(self, token: str, channel: str) -> None: ...

    async def unsubscribe(self, token: str, channel: str) -> None: ...

    async def channel_tokens(self, app_id: int, channel: str, after: str = "", limit: int = 1000) -> list[DeviceToken]:
        """Active tokens subscribed to channel, ordered by token, paged by ``after``."""

    # -- notifications ---------------------------------------------------------
    async def accept(self, notification: Notification) -> AcceptResult:
        """Durably accept one notification; concurrent callers share one
        transaction (group commit). Returns only after the commit."""

    async def accept_many(self, notifications: Sequence[Notification]) -> list[AcceptResult]:
        """Accept a batch; returns after every row committed, results in order.

        The batch goes through group commit like single accepts: it may share
        transactions with other callers and is split by device over the
        flushers, so a failure can leave part of it committed (a resend is
        answered from the original rows: idempotency per apns-id)."""

    async def backlog(
        self, device_id: str, limit: int, after: tuple[int, int] | None = None, now_s: int | None = None
    ) -> list[StoredNotification]:
        """Pending, unexpired notifications of the device, by priority desc then id.

        ``after`` is the (priority, id) of the last row of the previous page.
        """

    async def mark_delivered(self, device_id: str, ids: Sequence[int], sent_at_ms: int | None = None) -> int:
        """Batched ack: pending rows among ``ids`` that belong to the device become delivered."""

    async def mark_delivered_many(self, acks: Sequence[tuple[str, int]], sent_at_ms: int | None = None) -> int:
        """Acks of many devices in one statement: ``(device_id, id)`` pairs.

        Same rules as ``mark_delivered``: only pending rows of that device become
        delivered; returns how many rows changed.
        """

    async def discard(self, ids: Sequence[int]) -> int:
        """apns-expiration 0 to an absent device: pending -> discarded."""

    async def pending_devices(self, accepted_from_ms: int, accepted_to_ms: int, limit: int = 10_000) -> list[str]:
        """Devices with pending local rows accepted in [from, to) (their
        doorbell may have been lost) or scheduled to come due in it: the route
        repair rings their shards."""

    async def expire_due(self, now_s: int, limit: int = 10_000) -> int:
        """Sweeper: pending rows whose expiration passed become expired."""

    async def purge(self, older_than_ms: int, limit: int = 10_000) -> int:
        """Retention: delete terminal rows that ended (done_at_ms) before the cutoff."""

    async def take_overflow(self, device_id: str) -> int:
        """Number of notifications dropped by the backlog cap since last asked; resets it."""

    async def status(self, app_id: int, apns_id: str) -> NotificationStatus | None: ...

    # -- relay to Apple (kind apns) --------------------------------------------
    async def claim_relay(self, worker: str, limit: int, lease_ms: int) -> list[StoredNotification]:
        """Lease pending kind-apns rows (SKIP LOCKED on Postgres)."""

    async def finish_relay(
        self, id: int, status: str, reason: str | None = None, apple_id: str | None = None
    ) -> None: ...

    async def retry_relay(self, id: int, not_before_ms: int) -> None: ...

    async def claim_relay_batch(self, worker: str, limit: int, lease_ms: int) -> list[RelayClaim]:
        """Like ``claim_relay``, and counts one attempt per claimed row
        (persisted, so backoff and the attempt limit survive a restart)."""

    async def forget_apns_token(self, token: str) -> bool:
        """Delete a kind-apns token and its subscriptions (Apple: BadDeviceToken); True if it existed."""

    async def finish_relay_many(self, outcomes: Sequence[RelayOutcome]) -> int:
        """``finish_relay`` for many rows in one statement; rows no longer pending are left alone."""

    async def retry_relay_many(self, retries: Sequence[tuple[int, int]]) -> int:
        """``retry_relay`` for many ``(id, not_before_ms)`` in one statement."""

    # -- feedback (invalid tokens) and webhook outbox ---------------------------
    async def record_feedback(self, app_id: int, token: str, reason: str, at_ms: int) -> None:
        """One record per token that stopped being valid (unregistered, device
        deleted, Apple 410/BadDeviceToken/DeviceTokenNotForTopic)."""

    async def list_feedback(
        self, app_id: int, since_ms: int, after_id: int = 0, limit: int = 100
    ) -> list[FeedbackRecord]:
        """Records with at_ms >= since_ms, by id, paged by ``after_id``."""

    async def purge_feedback(self, older_than_ms: int) -> int: ...

    async def set_webhook(self, app_id: int, url: str, secret: str) -> None: ...

    async def get_webhook(self, app_id: int) -> tuple[str, str] | None:
        """(url, secret) of the app's webhook, if any."""

    async def enqueue_webhook(self, app_id: int, body: bytes, at_ms: int) -> int:
        """Durable outbox row; returns its id."""

    async def claim_webhooks(self, worker: str, limit: int, now_ms: int, lease_ms: int) -> list[WebhookJob]: ...

    async def finish_webhook(self, job_id: int, ok: bool, error: str | None, next_attempt_ms: int | None) -> None:
        """ok -> delivered; else attempts += 1 and retry at next_attempt_ms, or
        dead-letter when next_attempt_ms is None."""

    async def list_webhook_jobs(self, app_id: int, state: str | None = None, limit: int = 100) -> list[WebhookJob]: ...

    # -- power-aware delivery (015_power.sql; rules in power_rules.py) -----------
    async def get_quiet_hours(self, device_id: str) -> QuietHours | None: ...

    async def set_quiet_hours(self, device_id: str, quiet: QuietHours | None) -> None:
        """Set (or clear, with None) the device's quiet hours."""

    async def admit_background(
        self, device_id: str, ids: Sequence[int], budget: int, window_ms: int, now_ms: int
    ) -> tuple[list[int], int | None]:
        """Count background pushes about to be sent against the device's budget.

        Returns the ids over budget (not to send) and, if any, when the budget
        frees (ms).  The newest over-budget push stays pending; older pending
        background pushes of the device become ``superseded``."""

    async def admit_live_activities(self, updates: Sequence[tuple[int, str, str, float]], now_ms: int) -> list[int]:
        """(id, token, event, timestamp) of Live Activity pushes about to be sent;
        returns the ids refused (settled ``stale`` or ``activity_ended``)."""

    async def purge_power_state(self, older_than_ms: int, budget_from_ms: int, limit: int = 10_000) -> int:
        """Retention: Live Activity state untouched since ``older_than_ms`` and
        background sends before ``budget_from_ms`` (out of every budget window).
        A device's quiet hours go with the device (foreign key, 016)."""

    # -- device sessions in batches (sessions_store.py) ---------------------------
    async def connect_devices(self, credentials: Sequence[tuple[str, str]]) -> list[DeviceConnect | None]:
        """(device_id, secret) pairs -> device, app bundle id, pending overflow count and
        quiet hours in one read; None where the credential is wrong.  Writes nothing."""

    async def backlog_many(
        self, requests: Sequence[tuple[str, int, tuple[int, int] | None]]
    ) -> list[list[StoredNotification]]:
        """One ``backlog(device_id, limit, after)`` page per request, in one read."""
