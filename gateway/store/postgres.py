"""The PostgreSQL store on asyncpg (cluster deployments).

Queries live in ``sql/postgres/queries.sql``.  ``accept`` and ``accept_many``
both go through group commit; a batch is one short transaction (BEGIN,
accept_prepare, binary COPY, accept_bound, COMMIT: one WAL flush), so it costs the same few
round trips whatever its size.
Connection-level failures become ``StoreUnavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

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
    ZERO_EXPIRATION_GRACE_S,
    GroupCommitter,
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
from gateway.store.migrations import migrate_postgres, queries
from gateway.store.pg_analyze import StatisticsKeeper
from gateway.store.power_postgres import PowerPostgresMixin
from gateway.store.relay_rows import check_outcomes, to_relay_claim
from gateway.store.schedules_store import PostgresSchedulesMixin
from gateway.store.sessions_store import PostgresSessionsMixin
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

_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections, disk full
    asyncpg.exceptions.InternalClientError,  # the protocol state broken by a server going away
)
#: A connection whose query ended like this is terminated, never reused (see ``_conn``).
_ABANDONED: tuple[type[BaseException], ...] = (*_UNAVAILABLE, asyncio.CancelledError)
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError, asyncpg.exceptions.SerializationError)
#: After a resend was seen (a known apns-id, or the COPY hit the unique key),
#: accept batches look for known apns-ids first for this long.  A tenant that
#: keeps resending keeps the store in that mode: the cost of one batch redone,
#: then the probe per row, as before; nobody's rows are lost or refused.
PROBE_AFTER_DUPLICATE_S = 60.0
#: The COPY's columns; each record is (id, *the row _write_batch builds).
_COPY_COLUMNS = (
    "id", "apns_id", "app_id", "token", "topic", "payload", "priority", "push_type", "expiration", "expires_at_s",
    "collapse_id", "device_id", "kind", "status", "accepted_at_ms", "deliver_at_ms", "not_before_ms",
)  # fmt: skip
_PENDING = Status.PENDING.value
#: An apns-id as it is stored (a lowercase UUID; the column is a uuid since
#: migration 028): anything else names no notification, as in SQLite.
_STORED_APNS_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_KIND_VALUE = {k: k.value for k in TokenKind}  # a dict lookup: Enum.value is a slow descriptor
#: An accept transaction's settings.  A plan made while the table was small
#: (fresh database, stale statistics) would otherwise scan the table or hash
#: it on every batch as it grows (measured: 5 ms -> 650 ms per batch).
_BEGIN_ACCEPT = (
    "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off"
)
Q = queries("postgres")


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Pool release hook.

    asyncpg's default reset sends ``RESET ALL; UNLISTEN *; ...`` on every
    release: a round trip per query that profiling showed as half the cost of
    a token lookup.  The store keeps no session state (no LISTEN, settings
    only with SET LOCAL inside transactions), so only an abandoned
    transaction needs undoing.
    """
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


class PostgresStore(PostgresSchedulesMixin, PowerPostgresMixin, PostgresSessionsMixin):
    def __init__(
        self,
        dsn: str,
        *,
        retention_s: int = 30 * 86400,
        backlog_cap: int = 1000,
        group_commit_max: int = 2000,
        group_commit_flushers: int = 2,
        pool_size: int = 10,
        connect_timeout_s: float = 5.0,
        analyze_interval_s: float = 2.0,
    ) -> None:
        self.dsn = dsn
        self.retention_s = retention_s
        self.backlog_cap = backlog_cap
        self.connect_timeout_s = connect_timeout_s
        self._pool: asyncpg.Pool | None = None
        # Each flusher holds a pool connection while its batch is written: keep
        # at least as many connections again for everything else.
        self.pool_size = max(pool_size, 2 * group_commit_flushers)
        self.committer = GroupCommitter(self._write_batch, group_commit_max, group_commit_flushers)
        self._probe_until = 0.0  # time.monotonic() until which accept batches look for known apns-ids
        self.statistics = StatisticsKeeper(self._conn, analyze_interval_s)

    # -- lifecycle --------------------------------------------------------------

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout_s,
                reset=_reset_connection,
            )
            async with self._pool.acquire() as conn:
                await migrate_postgres(conn, now_ms())
        except _UNAVAILABLE as exc:
            await self._close_pool()
            raise StoreUnavailable(f"cannot reach PostgreSQL: {exc}") from exc
        self.statistics.start()

    async def close(self) -> None:
        await self.statistics.stop()
        await self.committer.close()
        await self._close_pool()

    async def _close_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 5.0)

    async def ping(self) -> None:
        async with self._conn() as conn:
            await conn.fetchval("SELECT 1")

    @contextlib.asynccontextmanager
    async def _conn(self) -> AsyncIterator[Any]:
        if self._pool is None:
            raise StoreUnavailable("store is not open")
        try:
            async with self._pool.acquire(timeout=self.connect_timeout_s) as conn:
                try:
                    yield conn
                except _ABANDONED:
                    # The server went away under this query, or the query was abandoned
                    # (its cancel request cannot reach a server that is down).  The
                    # connection may still be mid-protocol; the lean release reset (no
                    # query) would hand it out like that and the next query would fail
                    # with "another operation is in progress" (seen as a 500 while
                    # PostgreSQL restarted).  Never reuse it.
                    conn.terminate()
                    raise
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {exc}") from exc

    async def _fetch(self, name: str, *args: Any) -> list[Any]:
        async with self._conn() as conn:
            return list(await conn.fetch(Q[name], *args))

    async def _fetchrow(self, name: str, *args: Any) -> Any:
        async with self._conn() as conn:
            return await conn.fetchrow(Q[name], *args)

    async def _execute(self, name: str, *args: Any) -> int:
        async with self._conn() as conn:
            tag = await conn.execute(Q[name], *args)
        return int(tag.rsplit(" ", 1)[-1]) if tag and tag[-1].isdigit() else 0

    # -- tenants and credentials ------------------------------------------------

    async def create_team(self, team_id: str, name: str) -> Team:
        row = await self._fetchrow("create_team", team_id, name, now_ms())
        return Team(team_id=row["team_id"], name=row["name"])

    async def create_app(self, team_id: str, bundle_id: str, name: str = "") -> App:
        try:
            row = await self._fetchrow("create_app", team_id, bundle_id, name)
        except asyncpg.UniqueViolationError as exc:
            raise ValueError(f"bundle id {bundle_id!r} is already registered") from exc
        except asyncpg.ForeignKeyViolationError as exc:
            raise ValueError(f"unknown team {team_id!r}") from exc
        return to_app(row)

    async def get_app(self, app_id: int) -> App | None:
        row = await self._fetchrow("get_app", app_id)
        return to_app(row) if row else None

    async def get_app_by_bundle(self, bundle_id: str) -> App | None:
        row = await self._fetchrow("get_app_by_bundle", bundle_id)
        return to_app(row) if row else None

    async def list_apps(self, team_id: str | None = None) -> list[App]:
        return [to_app(r) for r in await self._fetch("list_apps", team_id)]

    async def add_provider_key(self, team_id: str, key_id: str, public_key_pem: str) -> ProviderKey:
        row = await self._fetchrow("add_provider_key", key_id, team_id, public_key_pem)
        return to_provider_key(row)

    async def get_provider_key(self, key_id: str) -> ProviderKey | None:
        row = await self._fetchrow("get_provider_key", key_id)
        return to_provider_key(row) if row else None

    async def revoke_provider_key(self, key_id: str) -> None:
        await self._execute("revoke_provider_key", key_id)

    async def create_api_key(self, app_id: int) -> str:
        plaintext = hashing.new_secret()
        await self._execute(
            "create_api_key", hashing.hash_secret(plaintext), hashing.key_prefix(plaintext), app_id, now_ms()
        )
        return plaintext

    async def verify_api_key(self, plaintext: str) -> App | None:
        row = await self._fetchrow("verify_api_key", hashing.hash_secret(plaintext))
        if row is None or not hashing.verify_secret(plaintext, row["key_hash"]):
            return None
        return to_app(row)

    # -- devices and tokens -------------------------------------------------------

    async def create_device(self, app_id: int, user_id: str | None = None) -> tuple[Device, str]:
        device_id, secret, at = hashing.new_device_id(), hashing.new_secret(), now_ms()
        await self._execute("create_device", device_id, app_id, user_id, hashing.hash_secret(secret), at)
        return Device(device_id=device_id, app_id=app_id, user_id=user_id, created_at_ms=at), secret

    async def authenticate_device(self, device_id: str, secret: str) -> Device | None:
        row = await self._fetchrow("get_device", device_id)
        if row is None or not hashing.verify_secret(secret, row["secret_hash"]):
            return None
        return to_device(row)

    async def get_device(self, device_id: str) -> Device | None:
        row = await self._fetchrow("get_device", device_id)
        return to_device(row) if row else None

    async def delete_device(self, device_id: str) -> list[DeviceToken]:
        at = now_ms()
        async with self._conn() as conn, conn.transaction():
            rows = await conn.fetch(Q["deactivate_device_tokens"], device_id, at)
            await conn.execute(Q["discard_device_rows"], device_id, at)
            await conn.execute(Q["delete_device"], device_id)
        return [to_token(r) for r in rows]

    async def issue_token(self, device_id: str, topic: str, environment: Environment) -> DeviceToken:
        device = await self.get_device(device_id)
        if device is None:
            raise ValueError(f"unknown device {device_id!r}")
        row = await self._fetchrow(
            "insert_token", hashing.new_token(), device.app_id, device_id, topic, environment.value,
            TokenKind.LOCAL.value, device.user_id, now_ms(),
        )  # fmt: skip
        return to_token(row)

    async def register_apns_token(
        self, app_id: int, token: str, topic: str, environment: Environment, user_id: str | None = None
    ) -> DeviceToken:
        row = await self._fetchrow(
            "register_apns_token", token.lower(), app_id, topic, environment.value, user_id, now_ms()
        )
        return to_token(row)

    async def get_token(self, token: str) -> DeviceToken | None:
        row = await self._fetchrow("get_token", token)
        return to_token(row) if row else None

    async def get_tokens(self, tokens: Sequence[str]) -> dict[str, DeviceToken]:
        if not tokens:
            return {}
        return {r["token"]: to_token(r) for r in await self._fetch("get_tokens", list(tokens))}

    async def unregister_token(self, token: str, at_ms: int | None = None) -> int | None:
        row = await self._fetchrow("unregister_token", token, at_ms if at_ms is not None else now_ms())
        return None if row is None else int(row["invalidated_at_ms"])

    async def list_device_tokens(self, device_id: str) -> list[DeviceToken]:
        return [to_token(r) for r in await self._fetch("list_device_tokens", device_id)]

    async def list_user_tokens(self, app_id: int, user_id: str) -> list[DeviceToken]:
        return [to_token(r) for r in await self._fetch("list_user_tokens", app_id, user_id)]

    # -- subscriptions ------------------------------------------------------------

    async def subscribe(self, token: str, channel: str) -> None:
        await self._execute("subscribe", token, channel)

    async def unsubscribe(self, token: str, channel: str) -> None:
        await self._execute("unsubscribe", token, channel)

    async def channel_tokens(self, app_id: int, channel: str, after: str = "", limit: int = 1000) -> list[DeviceToken]:
        return [to_token(r) for r in await self._fetch("channel_tokens", app_id, channel, after, limit)]

    # -- notifications --------------------------------------------------------------

    async def accept(self, notification: Notification) -> AcceptResult:
        return await self.committer.submit(notification)

    async def accept_many(self, notifications: Sequence[Notification]) -> list[AcceptResult]:
        return await self.committer.submit_many(notifications) if notifications else []

    async def _write_batch(self, notifications: Sequence[Notification]) -> list[AcceptResult]:
        """One group-commit batch in one transaction (the committer's flush)."""
        unique, where = unique_in_batch(notifications)
        at = now_ms()
        retention_end = at // 1000 + self.retention_s
        grace_end = at // 1000 + ZERO_EXPIRATION_GRACE_S
        # One pass builds the COPY rows without their id (the id comes from
        # accept_prepare); expires_at_s as expires_at_s() computes it.
        rows = [
            (n.apns_id, n.app_id, n.token, n.topic, n.payload, n.priority, n.push_type, n.expiration,
             retention_end if n.expiration is None else grace_end if n.expiration == 0 else n.expiration,
             n.collapse_id, n.device_id, _KIND_VALUE[n.kind], _PENDING, at, n.deliver_at_ms, n.deliver_at_ms or 0)
            for n in unique
        ]  # fmt: skip
        for attempt in range(3):
            probe = time.monotonic() < self._probe_until
            try:
                async with self._conn() as conn:
                    results = await self._accept_tx(conn, unique, rows, at, probe)
                break
            except asyncpg.UniqueViolationError:
                # An apns-id we did not look for is there (a resend), or a concurrent
                # batch committed one of ours first: the batch rolled back whole; from
                # now on look for known apns-ids for a while, the retry included.
                self._probe_until = time.monotonic() + PROBE_AFTER_DUPLICATE_S
                if attempt == 2:
                    raise
            except _RETRYABLE:
                # Another batch touched the same rows (or token bounds); ours rolled back whole.
                if attempt == 2:
                    raise
        return results if where is None else spread_results(results, where)

    async def _accept_tx(
        self, conn: Any, unique: Sequence[Notification], rows: list[tuple[Any, ...]], at: int, probe: bool
    ) -> list[AcceptResult]:
        """One transaction, one WAL flush: prepare, COPY, bound, then only the steps the batch needs.

        accept_prepare hands out the ids and finds the known apns-ids (only
        when ``probe``: the unique-key probe per row costs ~9 us of server
        CPU, and a resend without it fails the COPY on the unique key, see
        _write_batch); the new rows go in by binary COPY (measured ~15 us less
        server CPU per row than INSERT ... SELECT unnest ON CONFLICT);
        accept_bound then grows the tokens' pending bounds.  That UPDATE locks
        the token rows until COMMIT, so it runs after the COPY: batches of
        other processes to the same tokens wait for it and the commit only
        (with it first, they waited for the COPY too: 16 of 44 samples of the
        busy backends were lock waits in the two-process REST batch bench).
        Collapse runs only when a new row has a collapse id; the exact cap
        check only for tokens whose bound passed the cap; both after the
        bound, the lock order every transaction keeps (token rows, then
        notification rows).  Every statement is keyed lookups driven by the
        batch's arrays, so _BEGIN_ACCEPT rules out scans and hash/merge joins:
        the plans stay index probes whatever the statistics say when a plan is
        made, and generic plans can be reused (planning the prepare statement
        afresh cost ~2 ms per batch).
        """
        added: dict[str, int] = {}  # token -> rows of this batch (known ones too: the bound only loosens)
        for n in unique:
            added[n.token] = added.get(n.token, 0) + 1
        tokens = sorted(added)  # one lock order for the token rows across concurrent batches
        await conn.execute(_BEGIN_ACCEPT)
        try:
            prep = await conn.fetchrow(
                Q["accept_prepare"],
                [n.app_id for n in unique] if probe else [],
                [n.apns_id for n in unique] if probe else [],
                len(unique),
            )
            known: dict[tuple[int, str], tuple[int, str]] = {}
            if prep["known_ids"]:
                self._probe_until = time.monotonic() + PROBE_AFTER_DUPLICATE_S  # resends are arriving
                known = {
                    key: (i, st)
                    for key, i, st in zip(
                        zip(prep["known_app_ids"], prep["known_apns_ids"], strict=True),
                        prep["known_ids"], prep["known_statuses"], strict=True,
                    )
                }  # fmt: skip
            new_ids: list[int | None]
            keep: dict[tuple[str, str], int] = {}  # (token, collapse id) -> the newest row, which stays
            if known:
                ids = iter(prep["ids"])
                new_ids = [None if (n.app_id, n.apns_id) in known else next(ids) for n in unique]
                records = [(nid, *row) for nid, row in zip(new_ids, rows, strict=True) if nid is not None]
            else:  # the common case: every row is new, ids in input order
                new_ids = prep["ids"][: len(unique)]
                records = [(nid, *row) for nid, row in zip(new_ids, rows, strict=True)]
            for n, nid in zip(unique, new_ids, strict=True):
                if n.collapse_id is not None and nid is not None:
                    key = (n.token, n.collapse_id)
                    keep[key] = max(keep.get(key, 0), nid)
            if records:
                await conn.copy_records_to_table("notifications", records=records, columns=_COPY_COLUMNS)
            bound = await conn.fetchrow(Q["accept_bound"], tokens, [added[t] for t in tokens], self.backlog_cap)
            ended: dict[int, Status] = {}
            collapsed_by_key: dict[tuple[str, str], list[int]] = {}
            if keep:
                gone = await conn.fetch(
                    Q["accept_collapse"], [k[0] for k in keep], [k[1] for k in keep], list(keep.values()), at
                )
                for r in gone:
                    ended[r["id"]] = Status.COLLAPSED
                    collapsed_by_key.setdefault((r["token"], r["collapse_id"]), []).append(r["id"])
            check = list(bound["over_tokens"])
            if bound["bounded"] < len(tokens):  # tokens without a row to keep a bound in
                have = {r[0] for r in await conn.fetch(Q["accept_registered_tokens"], tokens)}
                check.extend(t for t in tokens if t not in have)
            if check and records:
                for r in await self._apply_cap(conn, unique, check, at):
                    ended[r["id"]] = Status.DROPPED
            await conn.execute("COMMIT")
        except BaseException:
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
            raise
        results = []
        pending = Status.PENDING
        for n, nid in zip(unique, new_ids, strict=True):
            if nid is None:
                old_id, old_status = known[(n.app_id, n.apns_id)]
                status = ended.get(old_id) or Status(old_status)  # this batch may have collapsed/dropped it
                results.append(AcceptResult(apns_id=n.apns_id, id=old_id, duplicate=True, status=status))
            elif n.collapse_id is None:
                results.append(AcceptResult(apns_id=n.apns_id, id=nid, status=ended.get(nid, pending)))
            else:
                older = [g for g in collapsed_by_key.get((n.token, n.collapse_id), ()) if g < nid]
                results.append(
                    AcceptResult(
                        apns_id=n.apns_id, id=nid, status=ended.get(nid, pending),
                        collapsed_id=max(older) if older else None,
                    )
                )  # fmt: skip
        return results

    async def _apply_cap(self, conn: Any, unique: Sequence[Notification], check: list[str], at: int) -> list[Any]:
        """The exact backlog cap for the tokens that may be over it; the dropped rows.

        A device token's pending rows are found through the drain index (by
        device), the others through the token index (migration 005).
        """
        device_of: dict[str, str | None] = {}
        for n in unique:
            device_of.setdefault(n.token, n.device_id if n.kind is TokenKind.LOCAL else None)
        check.sort()
        dropped = list(
            await conn.fetch(Q["accept_cap"], check, [device_of.get(t) for t in check], self.backlog_cap, at)
        )
        await conn.execute(Q["accept_bound_reset"], check)
        return dropped

    async def backlog(
        self, device_id: str, limit: int, after: tuple[int, int] | None = None, now_s: int | None = None
    ) -> list[StoredNotification]:
        at = now_ms() if now_s is None else now_s * 1000
        prio, last_id = after if after is not None else (11, 0)
        rows = await self._fetch("backlog", device_id, at // 1000, at, prio, last_id, limit)
        return [to_stored(r) for r in rows]

    async def mark_delivered(self, device_id: str, ids: Sequence[int], sent_at_ms: int | None = None) -> int:
        at = now_ms()
        return await self._execute("mark_delivered", device_id, list(ids), sent_at_ms or at, at)

    async def mark_delivered_many(self, acks: Sequence[tuple[str, int]], sent_at_ms: int | None = None) -> int:
        if not acks:
            return 0
        at = now_ms()
        devices = [d for d, _ in acks]
        ids = [i for _, i in acks]
        return await self._execute("mark_delivered_many", devices, ids, sent_at_ms or at, at)

    async def discard(self, ids: Sequence[int]) -> int:
        return await self._execute("discard", list(ids), now_ms())

    async def pending_devices(self, accepted_from_ms: int, accepted_to_ms: int, limit: int = 10_000) -> list[str]:
        rows = await self._fetch("pending_devices", accepted_from_ms, accepted_to_ms, limit)
        return [r["device_id"] for r in rows]

    async def expire_due(self, now_s: int, limit: int = 10_000) -> int:
        return await self._execute("expire_due", now_s, limit, now_s * 1000)

    async def purge(self, older_than_ms: int, limit: int = 10_000) -> int:
        return await self._execute("purge", older_than_ms, limit)

    async def take_overflow(self, device_id: str) -> int:
        row = await self._fetchrow("take_overflow", device_id)
        return 0 if row is None else int(row["overflow"])

    async def status(self, app_id: int, apns_id: str) -> NotificationStatus | None:
        if _STORED_APNS_ID.fullmatch(apns_id) is None:
            return None
        row = await self._fetchrow("status", app_id, apns_id)
        return to_status(row) if row else None

    # -- relay to Apple -------------------------------------------------------------

    async def claim_relay(self, worker: str, limit: int, lease_ms: int) -> list[StoredNotification]:
        rows = await self._fetch("claim_relay", worker, limit, now_ms(), lease_ms)
        return sorted((to_stored(r) for r in rows), key=lambda n: n.id)

    async def finish_relay(self, id: int, status: str, reason: str | None = None, apple_id: str | None = None) -> None:
        if Status(status) not in (Status.RELAYED, Status.REJECTED):
            raise ValueError(f"finish_relay status must be relayed or rejected, not {status!r}")
        await self._execute("finish_relay", id, status, reason, apple_id, now_ms())

    async def retry_relay(self, id: int, not_before_ms: int) -> None:
        await self._execute("retry_relay", id, not_before_ms)

    async def claim_relay_batch(self, worker: str, limit: int, lease_ms: int) -> list[RelayClaim]:
        rows = await self._fetch("claim_relay_batch", worker, limit, now_ms(), lease_ms)
        return sorted((to_relay_claim(r) for r in rows), key=lambda c: c.row.id)

    async def forget_apns_token(self, token: str) -> bool:
        return await self._execute("forget_apns_token", token) > 0

    async def finish_relay_many(self, outcomes: Sequence[RelayOutcome]) -> int:
        if not outcomes:
            return 0
        check_outcomes(outcomes)
        ids, statuses, reasons, apple_ids = (list(col) for col in zip(*outcomes, strict=True))
        return await self._execute("finish_relay_many", ids, statuses, reasons, apple_ids, now_ms())

    async def retry_relay_many(self, retries: Sequence[tuple[int, int]]) -> int:
        if not retries:
            return 0
        return await self._execute("retry_relay_many", [r[0] for r in retries], [r[1] for r in retries])

    # -- feedback and webhook outbox ------------------------------------------------

    async def record_feedback(self, app_id: int, token: str, reason: str, at_ms: int) -> None:
        await self._execute("record_feedback", app_id, token, reason, at_ms)

    async def list_feedback(
        self, app_id: int, since_ms: int, after_id: int = 0, limit: int = 100
    ) -> list[FeedbackRecord]:
        rows = await self._fetch("list_feedback", app_id, since_ms, after_id, limit)
        return [FeedbackRecord(**dict(r)) for r in rows]

    async def purge_feedback(self, older_than_ms: int) -> int:
        return await self._execute("purge_feedback", older_than_ms)

    async def set_webhook(self, app_id: int, url: str, secret: str) -> None:
        await self._execute("set_webhook", app_id, url, secret)

    async def get_webhook(self, app_id: int) -> tuple[str, str] | None:
        row = await self._fetchrow("get_webhook", app_id)
        return None if row is None else (row["url"], row["secret"])

    async def enqueue_webhook(self, app_id: int, body: bytes, at_ms: int) -> int:
        row = await self._fetchrow("enqueue_webhook", app_id, body, at_ms)
        return int(row["id"])

    async def claim_webhooks(self, worker: str, limit: int, now_ms: int, lease_ms: int) -> list[WebhookJob]:
        rows = await self._fetch("claim_webhooks", worker, limit, now_ms, lease_ms)
        return sorted((to_webhook_job(r) for r in rows), key=lambda j: j.id)

    async def finish_webhook(self, job_id: int, ok: bool, error: str | None, next_attempt_ms: int | None) -> None:
        if ok:
            await self._execute("finish_webhook_ok", job_id)
        else:
            await self._execute("finish_webhook_failed", job_id, error, next_attempt_ms)

    async def list_webhook_jobs(self, app_id: int, state: str | None = None, limit: int = 100) -> list[WebhookJob]:
        return [to_webhook_job(r) for r in await self._fetch("list_webhook_jobs", app_id, state, limit)]

    # -- extras (not in the protocol) ---------------------------------------------

    async def list_api_keys(self, app_id: int) -> list[ApiKeyRecord]:
        rows = await self._fetch("list_api_keys", app_id)
        return [ApiKeyRecord(**dict(r)) for r in rows]
