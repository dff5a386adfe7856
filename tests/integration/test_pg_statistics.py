"""Planner statistics follow a table that grows fast (gateway/store/pg_analyze.py).

A backlog read planned with the statistics of the empty table chose an index
that filtered every pending row for each device (8.2 s for one batched read
of 117 devices at 50,000 rows).  The store's keeper must ANALYZE the table
once it has grown, after which the drain query uses its own index.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg

from gateway.store.pg_analyze import KEEPER_STATISTICS_TARGET, MIN_CHANGED, TableStats, tables_to_analyze
from gateway.store.postgres import PostgresStore
from gateway.store.sessions_store import _PG
from schemas.notification import Environment, Notification, TokenKind
from tests.integration.test_delivery_support import eventually

ROWS = 3000  # > MIN_CHANGED: the keeper's rule makes a fresh table this size stale


def test_rule_is_autovacuums_with_a_floor() -> None:
    fresh = TableStats("notifications", changed_since_analyze=MIN_CHANGED - 1, rows_at_last_analyze=-1)
    grown = TableStats("notifications", changed_since_analyze=MIN_CHANGED, rows_at_last_analyze=-1)
    assert tables_to_analyze([fresh]) == []
    assert tables_to_analyze([grown]) == ["notifications"]
    # A big table needs 20 % of its rows changed, not just the floor.
    big = TableStats("tokens", changed_since_analyze=MIN_CHANGED + 10, rows_at_last_analyze=1_000_000)
    assert tables_to_analyze([big]) == []
    assert tables_to_analyze([TableStats("tokens", 201_000, 1_000_000)]) == ["tokens"]


async def _autovacuum_off(pg_dsn: str) -> None:
    """Autovacuum may visit a fresh database at any moment and analyze the table
    first (seen once in make test): keep it away so the keeper's work is what we see."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        await conn.execute("ALTER TABLE notifications SET (autovacuum_enabled = false)")
    finally:
        await conn.close()


async def _populate(store: PostgresStore, devices: int) -> list[str]:
    await store.create_team("TEAMSTATS1", "Team")
    app = await store.create_app("TEAMSTATS1", "com.example.stats", "Stats")
    owners = []
    for _ in range(devices):
        device, _secret = await store.create_device(app.app_id)
        token = await store.issue_token(device.device_id, "com.example.stats", Environment.PRODUCTION)
        owners.append((device.device_id, token.token))
    notes = [
        Notification(
            apns_id=str(uuid.uuid4()),
            app_id=app.app_id,
            token=owners[i % devices][1],
            topic="com.example.stats",
            payload=b'{"aps":{"alert":"hi"}}',
            device_id=owners[i % devices][0],
            kind=TokenKind.LOCAL,
        )
        for i in range(ROWS)
    ]
    for i in range(0, ROWS, 500):
        await store.accept_many(notes[i : i + 500])
    return [d for d, _t in owners]


async def test_keeper_analyzes_a_grown_table_and_the_drain_uses_its_index(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, backlog_cap=100_000, analyze_interval_s=0.2)
    await store.open()
    try:
        await _autovacuum_off(pg_dsn)
        devices = await _populate(store, devices=30)
        await eventually(lambda: store.statistics.analyzed >= 1, timeout=40, what="the keeper's ANALYZE")
        conn = await asyncpg.connect(pg_dsn)
        try:
            last, rows = await conn.fetchrow(
                "SELECT s.last_analyze, c.reltuples FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid"
                " WHERE s.relname = 'notifications'"
            )
            # The keeper samples small (KEEPER_STATISTICS_TARGET): apns_id is unique per
            # row, so its histogram has target + 1 bounds (101 at PostgreSQL's default).
            bounds = await conn.fetchval(
                "SELECT array_length(histogram_bounds::text::text[], 1) FROM pg_stats"
                " WHERE tablename = 'notifications' AND attname = 'apns_id'"
            )
            now_s = int(time.time())
            plan = "\n".join(
                r[0]
                for r in await conn.fetch(
                    "EXPLAIN " + _PG["backlog_many"],
                    devices[:5],
                    [11] * 5,
                    [0] * 5,
                    [64] * 5,
                    now_s,
                    now_s * 1000,
                )
            )
        finally:
            await conn.close()
        assert last is not None, "the keeper's ANALYZE is recorded as a manual analyze"
        assert rows >= ROWS * 0.9
        assert bounds == KEEPER_STATISTICS_TARGET + 1, bounds
        assert "notifications_backlog" in plan, plan
        # Fresh statistics: nothing more to do until the table changes again.
        assert await store.statistics.check_once() == []
    finally:
        await store.close()


async def test_keeper_off_leaves_statistics_alone(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, backlog_cap=100_000, analyze_interval_s=0)
    await store.open()
    try:
        await _autovacuum_off(pg_dsn)
        await _populate(store, devices=3)
        await asyncio.sleep(1.0)
        assert store.statistics.analyzed == 0
        # ... but asked directly it sees the stale table (the rule is what the loop runs).  An idle
        # backend publishes its counters within 1-10 s (PostgreSQL's idle stats timer): look again.
        analyzed: list[str] = []
        deadline = time.monotonic() + 40
        while "notifications" not in analyzed and time.monotonic() < deadline:
            analyzed = await store.statistics.check_once()
            await asyncio.sleep(0.2)
        assert "notifications" in analyzed
    finally:
        await store.close()
