"""Migrations produce the expected schema and are idempotent on re-open."""

from __future__ import annotations

import sqlite3

import asyncpg

from gateway.store.migrations import migrations, queries
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

#: 015_power.sql: quiet hours, background budget, Live Activity state.
POWER_TABLES = {"device_settings", "background_sends", "live_activities"}
TABLES = {
    "schema_migrations", "teams", "apps", "provider_keys", "api_keys", "devices", "tokens", "subscriptions",
    "notifications", "feedback", "webhooks", "webhook_jobs", "schedules", "digest_rules", "digest_items",
}  # fmt: skip
INDEXES = {
    "notifications_backlog", "notifications_token_pending", "notifications_collapse", "notifications_expiry",
    "notifications_relay", "notifications_done", "tokens_device", "feedback_app", "webhook_jobs_due",
    "notifications_pending_accepted", "notifications_pending_due", "schedules_due", "digest_items_open",
}  # fmt: skip


async def test_postgres_schema_and_idempotent_reopen(pg_dsn: str) -> None:
    for _ in range(2):
        store = PostgresStore(pg_dsn)
        await store.open()
        await store.close()
    conn = await asyncpg.connect(pg_dsn)
    try:
        tables = {r[0] for r in await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        indexes = {r[0]: r[1] for r in await conn.fetch("SELECT indexname, indexdef FROM pg_indexes")}
        versions = [r[0] for r in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
        has_fn = await conn.fetchval("SELECT count(*) FROM pg_proc WHERE proname = 'pushgw_accept'")
        apns_id_type = await conn.fetchval(
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'notifications' AND column_name = 'apns_id'"
        )
        # The purge can be served by notifications_done (027), whatever the table size.
        await conn.execute("SET enable_seqscan = off")
        purge_plan = " ".join(r[0] for r in await conn.fetch("EXPLAIN " + queries("postgres")["purge"], 0, 10))
    finally:
        await conn.close()
    assert TABLES <= tables
    assert INDEXES <= set(indexes)
    assert "WHERE" in indexes["notifications_backlog"] and "priority DESC" in indexes["notifications_backlog"]
    assert "hashtext(device_id)" in indexes["notifications_backlog"]  # 029: keyed by the device's hash
    assert versions == [m.version for m in migrations("postgres")]
    assert versions[:3] == [1, 2, 3] and 10 in versions  # 010: relay attempts (bridge)
    assert {20, 21} <= set(versions)  # 020, 021: schedules, digests
    assert 15 in versions  # 015: power-aware delivery
    assert POWER_TABLES <= tables
    assert has_fn == 0  # 026 dropped the unused accept function of 002
    assert "notifications_purge" not in indexes  # 027: the purge reads notifications_done
    assert "notifications_done" in purge_plan, purge_plan
    assert apns_id_type == "uuid"  # 028


async def test_sqlite_schema_and_idempotent_reopen(sqlite_path: str) -> None:
    for _ in range(2):
        store = SqliteStore(sqlite_path)
        await store.open()
        await store.close()
    db = sqlite3.connect(sqlite_path)
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {r[0]: r[1] for r in db.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'")}
        versions = [r[0] for r in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
        journal = db.execute("PRAGMA journal_mode").fetchone()[0]
        plan = " ".join(
            str(r[3])
            for r in db.execute(
                "EXPLAIN QUERY PLAN SELECT id FROM notifications WHERE device_id = 'd' AND status = 'pending'"
                " AND kind = 'local' ORDER BY priority DESC, id"
            )
        )
    finally:
        db.close()
    assert TABLES <= tables
    assert INDEXES <= set(indexes)
    assert "notifications_purge" not in indexes  # 027: the purge reads notifications_done
    assert versions == [m.version for m in migrations("sqlite")]
    assert versions[:2] == [1, 2] and 10 in versions  # 010: relay attempts (bridge)
    assert {20, 21} <= set(versions)  # 020, 021: schedules, digests
    assert 15 in versions  # 015: power-aware delivery
    assert journal == "wal"
    assert "notifications_backlog" in plan
