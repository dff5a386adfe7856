"""Admin statistics stay cheap at scale: no look scans ``notifications``.

Each statistics query is planned against the real database (PostgreSQL with
sequential scans priced out, SQLite's own planner) and must reach the table
through an index; the rollup counts only the window and, after its first
look, only what changed since the previous one (gateway/admin_rollup.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from gateway.admin_queries import AdminQueries
from gateway.admin_rollup import LAG_MS
from tests.admin.support import BUNDLE, Rig, eventually

HOUR_MS = 3_600_000
#: (query, its arguments, an index it must use; None: any index on the pending rows)
STATS_QUERIES: list[tuple[str, tuple[Any, ...], str | None]] = [
    ("pending_by_app", (), None),
    ("pending_since", (0,), None),
    ("accepted_done_between", (0, 1), "notifications_done"),
    ("done_between", (0, 1), "notifications_done"),
    ("ack_latencies", (0, 100), "notifications_done"),
    ("ack_latency_counts", (0, 1), "notifications_done"),
]


async def _plan(q: AdminQueries, name: str, args: tuple[Any, ...]) -> str:
    sql = q.q[name]
    if q.backend == "postgres":
        async with q.store._conn() as conn, conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")  # any index path wins if there is one
            return "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
    store = q.store
    rows = await store._run(lambda: store.db.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall())
    return "\n".join(str(r[-1]) for r in rows)


async def test_no_statistics_query_scans_the_notifications_table(rig: Rig) -> None:
    q = AdminQueries(rig.proc.core.store)
    for name, args, index in STATS_QUERIES:
        plan = await _plan(q, name, args)
        assert "Seq Scan on notifications" not in plan, (name, plan)
        scans = [line for line in plan.splitlines() if "SCAN notifications" in line]
        assert all("USING" in line for line in scans), (name, plan)  # SQLite: an index, not the table
        if index is not None:
            assert index in plan, (name, plan)


async def _age(rig: Rig, apns_ids: list[str], by_ms: int, *, acks_too: bool = True) -> None:
    """Move rows back in time, as if accepted (and acked, with ``acks_too``) ``by_ms`` earlier."""
    q = AdminQueries(rig.proc.core.store)
    ack_ms = by_ms if acks_too else 0
    if q.backend == "postgres":
        async with q.store._conn() as conn:
            await conn.execute(
                "UPDATE notifications SET accepted_at_ms = accepted_at_ms - $1, done_at_ms = done_at_ms - $2 "
                "WHERE apns_id = ANY($3::uuid[])", by_ms, ack_ms, apns_ids,
            )  # fmt: skip
        return
    store = q.store
    marks = ",".join("?" * len(apns_ids))
    sql = (f"UPDATE notifications SET accepted_at_ms = accepted_at_ms - ?, done_at_ms = done_at_ms - ? "
           f"WHERE apns_id IN ({marks})")  # fmt: skip
    await store._run(lambda: store.db.execute(sql, (by_ms, ack_ms, *apns_ids)))


async def _app_stats(rig: Rig) -> dict[str, Any]:
    (app,) = [a for a in (await rig.admin("GET", "/stats"))["apps"] if a["bundle_id"] == BUNDLE]
    return dict(app)


async def test_counts_cover_the_window_and_follow_each_change(rig: Rig) -> None:
    _online, online_token, _client = await rig.new_device()
    offline_id, offline_token, offline = await rig.new_device(connect=False)
    old = [await rig.send(online_token, f"old {i}") for i in range(2)]

    async def old_ones_acked() -> bool:
        status = [await rig.rest("GET", f"/api/v1/notifications/{i}") for i in old]
        return all(s["status"] == "delivered" for s in status)

    await eventually(old_ones_acked, what="the old notifications acked")
    await _age(rig, old, 2 * HOUR_MS)  # before the 15-minute window: history, not counted
    waiting = [await rig.send(offline_token, f"waits {i}") for i in range(3)]

    first = await _app_stats(rig)  # the first look reads the window once
    assert (first["accepted"], first["pending"], first["delivered"]) == (3, 3, 0)

    offline.start()  # the backlog drains: 3 transitions, nothing newly accepted
    await offline.wait_connected()
    rig.devices.append(offline)

    async def drained() -> dict[str, Any] | None:
        s = await _app_stats(rig)
        return s if s["delivered"] == 3 else None

    after = await eventually(drained, what="3 delivered in the stats")
    assert (after["accepted"], after["pending"]) == (3, 0)
    one_more = await rig.send(online_token, "one more")
    await asyncio.sleep(LAG_MS / 1000)

    async def counted() -> dict[str, Any] | None:
        s = await _app_stats(rig)
        return s if s["delivered"] == 4 else None

    last = await eventually(counted, what="the fourth delivery")
    assert (last["accepted"], last["pending"], last["expired"], last["dropped"]) == (4, 0, 0, 0)
    assert one_more not in waiting and offline_id


def test_rollup_counts_by_conservation_and_drops_old_minutes() -> None:
    from gateway.admin_rollup import MINUTE_MS, Rollup

    r = Rollup(window_s=120)
    now = int(time.time() * 1000)
    minute = now // MINUTE_MS
    r.start(now, [{"app_id": 1, "minute": minute, "n": 5}, {"app_id": 1, "minute": None, "n": 7}], [], [])
    assert (r.per_app()[1]["accepted"], r.per_app()[1]["pending"]) == (5, 12)  # 7 came before the window
    done = [
        {"app_id": 1, "status": "delivered", "bridge_reason": None, "minute": minute, "n": 5},
        {"app_id": 1, "status": "expired", "bridge_reason": None, "minute": minute, "n": 7},
    ]
    r.add(now + 1000, done, [])  # 12 transitions, 12 fewer pending: nothing newly accepted
    assert {k: v for k, v in r.per_app()[1].items() if v} == {"accepted": 5, "delivered": 5, "expired": 7}
    r.add(now + 5 * MINUTE_MS, [], [{"app_id": 1, "n": 2}])  # the first minutes left the window
    assert {k: v for k, v in r.per_app()[1].items() if v} == {"accepted": 2, "pending": 2}
    relayed = [{"app_id": 2, "status": "rejected", "bridge_reason": "BadDeviceToken",
                "minute": (now + 5 * MINUTE_MS) // MINUTE_MS, "n": 1}]  # fmt: skip
    r.add(now + 5 * MINUTE_MS + 1, relayed, [{"app_id": 1, "n": 2}])
    assert r.bridge() == [{"status": "rejected", "reason": "BadDeviceToken", "count": 1}]
    assert r.per_app()[2]["accepted"] == 1 and r.per_app()[2]["rejected"] == 1
