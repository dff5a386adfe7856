"""PostgreSQL's compact notification keys (migrations 028 and 029).

028 stores apns_id as a uuid: rows accepted before it read back with the same
strings.  029 keys the drain index by hashtext(device_id) (test_migrations
checks the index): devices whose ids share a hash must still see only their
own rows in every query that reads it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from gateway.store import migrations as migrations_module
from gateway.store.postgres import PostgresStore
from schemas.notification import Environment, Notification, TokenKind

BUNDLE = "com.example.keys"


async def _team_and_app(store: PostgresStore) -> int:
    await store.create_team("TEAMKEYS01", "Team")
    return (await store.create_app("TEAMKEYS01", BUNDLE)).app_id


async def test_apns_ids_accepted_before_028_read_back_the_same(pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    every = migrations_module.migrations
    monkeypatch.setattr(migrations_module, "migrations", lambda b: tuple(m for m in every(b) if m.version < 28))
    old = PostgresStore(pg_dsn)
    await old.open()
    try:
        app_id = await _team_and_app(old)
        device, _ = await old.create_device(app_id)
        token = (await old.issue_token(device.device_id, BUNDLE, Environment.PRODUCTION)).token
        apns_id = str(uuid.uuid4())
        async with old._conn() as conn:
            assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == 27
            await conn.execute(
                "INSERT INTO notifications (apns_id, app_id, token, topic, payload, priority, push_type,"
                " expires_at_s, device_id, kind, status, accepted_at_ms)"
                " VALUES ($1, $2, $3, $4, $5, 10, 'alert', 4102444800, $6, 'local', 'pending', 1)",
                apns_id, app_id, token, BUNDLE, b'{"aps":{}}', device.device_id,
            )  # fmt: skip
    finally:
        await old.close()
    monkeypatch.setattr(migrations_module, "migrations", every)

    store = PostgresStore(pg_dsn)
    await store.open()
    try:
        async with store._conn() as conn:
            assert await conn.fetchval(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_name = 'notifications' AND column_name = 'apns_id'"
            ) == "uuid"  # fmt: skip
        status = await store.status(app_id, apns_id)
        assert status is not None and status.apns_id == apns_id
        (row,) = await store.backlog(device.device_id, 10)
        assert row.apns_id == apns_id
        # A resend of it is recognised as the same notification (the probe reads the uuid column).
        again = await store.accept(
            Notification(apns_id=apns_id, app_id=app_id, token=token, topic=BUNDLE, payload=b'{"aps":{}}',
                         device_id=device.device_id)
        )  # fmt: skip
        assert again.duplicate and again.id == row.id
    finally:
        await store.close()


async def _ids_sharing_a_hash(conn: Any) -> list[str]:
    """Two device ids with the same hashtext() (the birthday bound: ~10 pairs in 300,000)."""
    ids = await conn.fetchval(
        "SELECT ids FROM (SELECT array_agg(id ORDER BY id) AS ids FROM ("
        "  SELECT 'device-' || g AS id FROM generate_series(1, 300000) g) s"
        " GROUP BY hashtext(id) HAVING count(*) > 1) c LIMIT 1"
    )
    assert ids is not None and len(ids) >= 2
    return list(ids[:2])


async def test_devices_sharing_a_hash_see_only_their_own_rows(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, backlog_cap=3)
    await store.open()
    try:
        app_id = await _team_and_app(store)
        async with store._conn() as conn:
            a, b = await _ids_sharing_a_hash(conn)
            assert await conn.fetchval("SELECT hashtext($1) = hashtext($2)", a, b)
            for device_id in (a, b):
                await conn.execute(
                    "INSERT INTO devices (device_id, app_id, secret_hash, created_at_ms) VALUES ($1, $2, $3, 0)",
                    device_id, app_id, b"x",
                )  # fmt: skip
        tokens = {d: (await store.issue_token(d, BUNDLE, Environment.PRODUCTION)).token for d in (a, b)}

        def note(device_id: str, priority: int, push_type: str = "alert") -> Notification:
            return Notification(
                apns_id=str(uuid.uuid4()), app_id=app_id, token=tokens[device_id], topic=BUNDLE,
                payload=b'{"aps":{}}', priority=priority, push_type=push_type, device_id=device_id,
                kind=TokenKind.LOCAL,
            )  # fmt: skip

        # Interleaved, so the shared index key holds both devices' rows side by side.
        accepted: dict[str, list[int]] = {a: [], b: []}
        for prio in (5, 10, 5, 10, 1):
            for d in (a, b):
                accepted[d].append((await store.accept(note(d, prio))).id)
        for d in (a, b):
            page = await store.backlog(d, 10)
            # The cap (3) dropped the lowest priority, oldest first: kept 10, 10 and the newer 5.
            assert [n.device_id for n in page] == [d, d, d]
            assert [n.id for n in page] == [accepted[d][1], accepted[d][3], accepted[d][2]]
        pages = await store.backlog_many([(a, 10, None), (b, 10, None)])
        assert [[n.id for n in p] for p in pages] == [[accepted[d][i] for i in (1, 3, 2)] for d in (a, b)]

        # Background budget (power rules) supersedes through the same index: a's older
        # background push goes, b's stay.
        for d in (a, b):
            await store.mark_delivered(d, [n.id for n in await store.backlog(d, 10)])
        bg = {d: [(await store.accept(note(d, 5, push_type="background"))).id for _ in range(2)] for d in (a, b)}
        over, _ = await store.admit_background(a, [bg[a][1]], 0, 3_600_000, int(time.time() * 1000))
        assert over == [bg[a][1]]
        assert [n.id for n in await store.backlog(a, 10)] == [bg[a][1]]
        assert [n.id for n in await store.backlog(b, 10)] == bg[b]
    finally:
        await store.close()
