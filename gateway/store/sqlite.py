"""The SQLite store (embedded default): WAL, ``synchronous=FULL``.

SQLite has one writer, so the store owns one connection and one thread:
every operation is a plain synchronous function run on that thread, which
serialises them without asyncio locks and lets a whole transaction (a
group-commit batch) cost one thread hop instead of one per statement.
``synchronous=FULL`` makes each COMMIT durable before ``accept`` returns.
Queries live in ``sql/sqlite/queries.sql``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from gateway.store import hashing
from gateway.store.base import (
    ApiKeyRecord,
    App,
    Device,
    DeviceToken,
    FeedbackRecord,
    ProviderKey,
    RelayClaim,
    RelayOutcome,
    Team,
    WebhookJob,
)
from gateway.store.group_commit import (
    GroupCommitter,
    expires_at_s,
    now_ms,
    spread_results,
    to_app,
    to_device,
    to_provider_key,
    to_status,
    to_stored,
    to_token,
    to_webhook_job,
    unique_in_batch,
)
from gateway.store.migrations import migrate_sqlite, queries
from gateway.store.power_sqlite import PowerSqliteMixin
from gateway.store.relay_rows import check_outcomes, to_relay_claim
from gateway.store.schedules_store import SqliteSchedulesMixin
from gateway.store.sessions_store import SqliteSessionsMixin
from schemas.errors import StoreUnavailable
from schemas.notification import (
    AcceptResult,
    Environment,
    Notification,
    NotificationStatus,
    Status,
    StoredNotification,
    TokenKind,
)

Q = queries("sqlite")
T = TypeVar("T")


class SqliteStore(SqliteSchedulesMixin, PowerSqliteMixin, SqliteSessionsMixin):
    def __init__(
        self,
        path: str,
        *,
        retention_s: int = 30 * 86400,
        backlog_cap: int = 1000,
        group_commit_max: int = 2000,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.path = path
        self.retention_s = retention_s
        self.backlog_cap = backlog_cap
        self.busy_timeout_ms = busy_timeout_ms
        self._db: sqlite3.Connection | None = None
        self._thread: concurrent.futures.ThreadPoolExecutor | None = None
        self.committer = GroupCommitter(self._write_batch, group_commit_max)

    # -- plumbing ------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._thread is None:
            raise StoreUnavailable("store is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._thread, functools.partial(fn, *args))
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.OperationalError, sqlite3.DatabaseError, OSError) as exc:
            # unable to open, disk I/O error, database locked for too long, ...
            raise StoreUnavailable(f"SQLite unavailable: {exc}") from exc

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None, "store is not open"
        return self._db

    def _q(self, name: str, *args: Any) -> list[Any]:
        return self.db.execute(Q[name], args).fetchall()

    def _one(self, name: str, *args: Any) -> Any:
        # fetchall, not fetchone: a RETURNING statement only finishes (and
        # autocommits) once it has been stepped to the end.
        rows = self.db.execute(Q[name], args).fetchall()
        return rows[0] if rows else None

    def _exec(self, name: str, *args: Any) -> int:
        return self.db.execute(Q[name], args).rowcount

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- lifecycle -----------------------------------------------------------------

    def _open_sync(self) -> None:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.row_factory = sqlite3.Row
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = FULL")
            db.execute("PRAGMA foreign_keys = ON")
            self._db = db
            migrate_sqlite(db, now_ms())
        except BaseException:
            db.close()
            self._db = None
            raise

    async def open(self) -> None:
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="pushgw-sqlite")
        try:
            await self._run(self._open_sync)
        except BaseException:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise

    async def close(self) -> None:
        await self.committer.close()
        if self._db is not None:
            with contextlib.suppress(Exception):
                await self._run(self.db.close)
        if self._thread is not None:
            self._thread.shutdown(wait=True)
        self._thread = None
        self._db = None

    async def ping(self) -> None:
        await self._run(lambda: self.db.execute("SELECT 1").fetchone())

    # -- tenants and credentials ---------------------------------------------------

    async def create_team(self, team_id: str, name: str) -> Team:
        row = await self._run(self._one, "create_team", team_id, name, now_ms())
        return Team(team_id=row["team_id"], name=row["name"])

    async def create_app(self, team_id: str, bundle_id: str, name: str = "") -> App:
        try:
            row = await self._run(self._one, "create_app", team_id, bundle_id, name)
        except sqlite3.IntegrityError as exc:
            raise ValueError(f"cannot create app {bundle_id!r} for team {team_id!r}: {exc}") from exc
        return to_app(row)

    async def get_app(self, app_id: int) -> App | None:
        row = await self._run(self._one, "get_app", app_id)
        return to_app(row) if row else None

    async def get_app_by_bundle(self, bundle_id: str) -> App | None:
        row = await self._run(self._one, "get_app_by_bundle", bundle_id)
        return to_app(row) if row else None

    async def list_apps(self, team_id: str | None = None) -> list[App]:
        return [to_app(r) for r in await self._run(self._q, "list_apps", team_id)]

    async def add_provider_key(self, team_id: str, key_id: str, public_key_pem: str) -> ProviderKey:
        return to_provider_key(await self._run(self._one, "add_provider_key", key_id, team_id, public_key_pem))

    async def get_provider_key(self, key_id: str) -> ProviderKey | None:
        row = await self._run(self._one, "get_provider_key", key_id)
        return to_provider_key(row) if row else None

    async def revoke_provider_key(self, key_id: str) -> None:
        await self._run(self._exec, "revoke_provider_key", key_id)

    async def create_api_key(self, app_id: int) -> str:
        plaintext = hashing.new_secret()
        await self._run(
            self._exec, "create_api_key", hashing.hash_secret(plaintext), hashing.key_prefix(plaintext), app_id,
            now_ms(),
        )  # fmt: skip
        return plaintext

    async def verify_api_key(self, plaintext: str) -> App | None:
        row = await self._run(self._one, "verify_api_key", hashing.hash_secret(plaintext))
        if row is None or not hashing.verify_secret(plaintext, row["key_hash"]):
            return None
        return to_app(row)

    async def list_api_keys(self, app_id: int) -> list[ApiKeyRecord]:
        rows = await self._run(self._q, "list_api_keys", app_id)
        return [
            ApiKeyRecord(key_prefix=r["key_prefix"], app_id=r["app_id"], created_at_ms=r["created_at_ms"]) for r in rows
        ]

    # -- devices and tokens ----------------------------------------------------------

    async def create_device(self, app_id: int, user_id: str | None = None) -> tuple[Device, str]:
        device_id, secret, at = hashing.new_device_id(), hashing.new_secret(), now_ms()
        await self._run(self._exec, "create_device", device_id, app_id, user_id, hashing.hash_secret(secret), at)
        return Device(device_id=device_id, app_id=app_id, user_id=user_id, created_at_ms=at), secret

    async def authenticate_device(self, device_id: str, secret: str) -> Device | None:
        row = await self._run(self._one, "get_device", device_id)
        if row is None or not hashing.verify_secret(secret, row["secret_hash"]):
            return None
        return to_device(row)

    async def get_device(self, device_id: str) -> Device | None:
        row = await self._run(self._one, "get_device", device_id)
        return to_device(row) if row else None

    def _delete_device_sync(self, device_id: str, at: int) -> list[Any]:
        with self._tx():
            rows = self._q("deactivate_device_tokens", device_id, at)
            self._exec("discard_device_rows", device_id, at)
            self._exec("delete_device", device_id)
        return rows

    async def delete_device(self, device_id: str) -> list[DeviceToken]:
        return [to_token(r) for r in await self._run(self._delete_device_sync, device_id, now_ms())]

    async def issue_token(self, device_id: str, topic: str, environment: Environment) -> DeviceToken:
        device = await self.get_device(device_id)
        if device is None:
            raise ValueError(f"unknown device {device_id!r}")
        row = await self._run(
            self._one, "insert_token", hashing.new_token(), device.app_id, device_id, topic, environment.value,
            TokenKind.LOCAL.value, device.user_id, now_ms(),
        )  # fmt: skip
        return to_token(row)

    async def register_apns_token(
        self, app_id: int, token: str, topic: str, environment: Environment, user_id: str | None = None
    ) -> DeviceToken:
        row = await self._run(
            self._one, "register_apns_token", token.lower(), app_id, topic, environment.value, user_id, now_ms()
        )
        return to_token(row)

    async def get_token(self, token: str) -> DeviceToken | None:
        row = await self._run(self._one, "get_token", token)
        return to_token(row) if row else None

    async def get_tokens(self, tokens: Sequence[str]) -> dict[str, DeviceToken]:
        if not tokens:
            return {}
        rows = await self._run(self._q, "get_tokens", json.dumps(list(tokens)))
        return {r["token"]: to_token(r) for r in rows}

    async def unregister_token(self, token: str, at_ms: int | None = None) -> int | None:
        row = await self._run(self._one, "unregister_token", token, at_ms if at_ms is not None else now_ms())
        return None if row is None else int(row["invalidated_at_ms"])

    async def list_device_tokens(self, device_id: str) -> list[DeviceToken]:
        return [to_token(r) for r in await self._run(self._q, "list_device_tokens", device_id)]

    async def list_user_tokens(self, app_id: int, user_id: str) -> list[DeviceToken]:
        return [to_token(r) for r in await self._run(self._q, "list_user_tokens", app_id, user_id)]

    # -- subscriptions -----------------------------------------------------------------

    async def subscribe(self, token: str, channel: str) -> None:
        await self._run(self._exec, "subscribe", token, channel)

    async def unsubscribe(self, token: str, channel: str) -> None:
        await self._run(self._exec, "unsubscribe", token, channel)

    async def channel_tokens(self, app_id: int, channel: str, after: str = "", limit: int = 1000) -> list[DeviceToken]:
        return [to_token(r) for r in await self._run(self._q, "channel_tokens", app_id, channel, after, limit)]

    # -- notifications -------------------------------------------------------------------

    async def accept(self, notification: Notification) -> AcceptResult:
        return await self.committer.submit(notification)

    async def accept_many(self, notifications: Sequence[Notification]) -> list[AcceptResult]:
        return await self.committer.submit_many(notifications) if notifications else []

    async def _write_batch(self, notifications: Sequence[Notification]) -> list[AcceptResult]:
        """One group-commit batch in one transaction (the committer's flush)."""
        unique, where = unique_in_batch(notifications)
        results = await self._run(self._accept_sync, unique, now_ms())
        return results if where is None else spread_results(results, where)

    def _accept_sync(self, batch: Sequence[Notification], at: int) -> list[AcceptResult]:
        db = self.db
        ids: list[int] = []
        known: dict[int, Status] = {}  # rows that existed before: their status
        collapsed_by: dict[int, int] = {}  # new row id -> the older pending row it replaced
        ended: dict[int, Status] = {}  # rows of this batch collapsed/dropped within it
        added: dict[str, int] = {}  # token -> rows this batch made pending
        with self._tx():
            for n in batch:
                row = db.execute(
                    Q["insert_notification"],
                    (n.apns_id, n.app_id, n.token, n.topic, n.payload, n.priority, n.push_type, n.expiration,
                     expires_at_s(n, at, self.retention_s), n.collapse_id, n.device_id, n.kind.value, at,
                     n.deliver_at_ms),
                ).fetchall()  # fmt: skip
                if not row:
                    old = db.execute(Q["existing_notification"], (n.app_id, n.apns_id)).fetchone()
                    ids.append(old["id"])
                    known[old["id"]] = Status(old["status"])
                    continue
                new_id = row[0][0]
                ids.append(new_id)
                added[n.token] = added.get(n.token, 0) + 1
                if n.collapse_id is not None:
                    gone = [r[0] for r in db.execute(Q["collapse"], (n.token, n.collapse_id, new_id, at))]
                    if gone:
                        collapsed_by[new_id] = max(gone)
                        ended.update((g, Status.COLLAPSED) for g in gone)
            overflow: dict[str, int] = {}
            for token, count in added.items():
                bound = db.execute(Q["add_pending_bound"], (token, count)).fetchall()
                if bound and bound[0][0] <= self.backlog_cap:
                    continue  # cannot be over the cap: skip reading its pending rows
                for r in db.execute(Q["over_cap"], (token, self.backlog_cap)).fetchall():
                    db.execute(Q["drop_row"], (r["id"], at))
                    ended[r["id"]] = Status.DROPPED
                    if r["device_id"] is not None:
                        overflow[r["device_id"]] = overflow.get(r["device_id"], 0) + 1
                db.execute(Q["reset_pending_bound"], (token,))
            for device_id, count in overflow.items():
                db.execute(Q["add_overflow"], (device_id, count))
        return [
            AcceptResult(
                apns_id=n.apns_id,
                id=i,
                duplicate=i in known,
                status=known.get(i) or ended.get(i, Status.PENDING),
                collapsed_id=collapsed_by.get(i),
            )
            for n, i in zip(batch, ids, strict=True)
        ]

    async def backlog(
        self, device_id: str, limit: int, after: tuple[int, int] | None = None, now_s: int | None = None
    ) -> list[StoredNotification]:
        at = now_ms() if now_s is None else now_s * 1000
        prio, last_id = after if after is not None else (11, 0)
        rows = await self._run(self._q, "backlog", device_id, at // 1000, at, prio, last_id, limit)
        return [to_stored(r) for r in rows]

    async def mark_delivered(self, device_id: str, ids: Sequence[int], sent_at_ms: int | None = None) -> int:
        at = now_ms()
        return await self._run(self._exec, "mark_delivered", device_id, json.dumps(list(ids)), sent_at_ms or at, at)

    async def mark_delivered_many(self, acks: Sequence[tuple[str, int]], sent_at_ms: int | None = None) -> int:
        if not acks:
            return 0
        at = now_ms()
        pairs = json.dumps([[d, i] for d, i in acks])
        return await self._run(self._exec, "mark_delivered_many", pairs, sent_at_ms or at, at)

    async def discard(self, ids: Sequence[int]) -> int:
        return await self._run(self._exec, "discard", json.dumps(list(ids)), now_ms())

    async def pending_devices(self, accepted_from_ms: int, accepted_to_ms: int, limit: int = 10_000) -> list[str]:
        rows = await self._run(self._q, "pending_devices", accepted_from_ms, accepted_to_ms, limit)
        return [r["device_id"] for r in rows]

    async def expire_due(self, now_s: int, limit: int = 10_000) -> int:
        return await self._run(self._exec, "expire_due", now_s, limit, now_s * 1000)

    async def purge(self, older_than_ms: int, limit: int = 10_000) -> int:
        return await self._run(self._exec, "purge", older_than_ms, limit)

    def _take_overflow_sync(self, device_id: str) -> int:
        with self._tx():
            row = self._one("get_overflow", device_id)
            if row is None or not row["overflow"]:
                return 0
            self._exec("reset_overflow", device_id)
            return int(row["overflow"])

    async def take_overflow(self, device_id: str) -> int:
        return await self._run(self._take_overflow_sync, device_id)

    async def status(self, app_id: int, apns_id: str) -> NotificationStatus | None:
        row = await self._run(self._one, "status", app_id, apns_id)
        return to_status(row) if row else None

    # -- relay to Apple ---------------------------------------------------------------

    async def claim_relay(self, worker: str, limit: int, lease_ms: int) -> list[StoredNotification]:
        rows = await self._run(self._q, "claim_relay", worker, limit, now_ms(), lease_ms)
        return sorted((to_stored(r) for r in rows), key=lambda n: n.id)

    async def finish_relay(self, id: int, status: str, reason: str | None = None, apple_id: str | None = None) -> None:
        if Status(status) not in (Status.RELAYED, Status.REJECTED):
            raise ValueError(f"finish_relay status must be relayed or rejected, not {status!r}")
        await self._run(self._exec, "finish_relay", id, status, reason, apple_id, now_ms())

    async def retry_relay(self, id: int, not_before_ms: int) -> None:
        await self._run(self._exec, "retry_relay", id, not_before_ms)

    async def claim_relay_batch(self, worker: str, limit: int, lease_ms: int) -> list[RelayClaim]:
        rows = await self._run(self._q, "claim_relay_batch", worker, limit, now_ms(), lease_ms)
        return sorted((to_relay_claim(r) for r in rows), key=lambda c: c.row.id)

    async def forget_apns_token(self, token: str) -> bool:
        return await self._run(self._forget_apns_token_sync, token) > 0

    def _forget_apns_token_sync(self, token: str) -> int:
        with self._tx():
            self._exec("forget_apns_token_subscriptions", token)
            return self._exec("forget_apns_token", token)

    async def finish_relay_many(self, outcomes: Sequence[RelayOutcome]) -> int:
        if not outcomes:
            return 0
        check_outcomes(outcomes)
        at = now_ms()
        return await self._run(self._many, "finish_relay", [(*o, at) for o in outcomes])

    async def retry_relay_many(self, retries: Sequence[tuple[int, int]]) -> int:
        if not retries:
            return 0
        return await self._run(self._many, "retry_relay", list(retries))

    def _many(self, name: str, rows: list[tuple[Any, ...]]) -> int:
        with self._tx():
            return self.db.executemany(Q[name], rows).rowcount

    # -- feedback and webhook outbox ------------------------------------------------------

    async def record_feedback(self, app_id: int, token: str, reason: str, at_ms: int) -> None:
        await self._run(self._exec, "record_feedback", app_id, token, reason, at_ms)

    async def list_feedback(
        self, app_id: int, since_ms: int, after_id: int = 0, limit: int = 100
    ) -> list[FeedbackRecord]:
        rows = await self._run(self._q, "list_feedback", app_id, since_ms, after_id, limit)
        return [FeedbackRecord(**{k: r[k] for k in r.keys()}) for r in rows]

    async def purge_feedback(self, older_than_ms: int) -> int:
        return await self._run(self._exec, "purge_feedback", older_than_ms)

    async def set_webhook(self, app_id: int, url: str, secret: str) -> None:
        await self._run(self._exec, "set_webhook", app_id, url, secret)

    async def get_webhook(self, app_id: int) -> tuple[str, str] | None:
        row = await self._run(self._one, "get_webhook", app_id)
        return None if row is None else (row["url"], row["secret"])

    async def enqueue_webhook(self, app_id: int, body: bytes, at_ms: int) -> int:
        return int((await self._run(self._one, "enqueue_webhook", app_id, body, at_ms))["id"])

    async def claim_webhooks(self, worker: str, limit: int, now_ms: int, lease_ms: int) -> list[WebhookJob]:
        rows = await self._run(self._q, "claim_webhooks", worker, limit, now_ms, lease_ms)
        return sorted((to_webhook_job(r) for r in rows), key=lambda j: j.id)

    async def finish_webhook(self, job_id: int, ok: bool, error: str | None, next_attempt_ms: int | None) -> None:
        if ok:
            await self._run(self._exec, "finish_webhook_ok", job_id)
        else:
            await self._run(self._exec, "finish_webhook_failed", job_id, error, next_attempt_ms)

    async def list_webhook_jobs(self, app_id: int, state: str | None = None, limit: int = 100) -> list[WebhookJob]:
        return [to_webhook_job(r) for r in await self._run(self._q, "list_webhook_jobs", app_id, state, limit)]
