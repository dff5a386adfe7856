"""Pending-bound credits (PostgreSQL): a token's rows are paid from credits
reserved with its bound, so most accepts do not touch the token row, and the
backlog cap stays exact in one process and within the credits across two."""

from __future__ import annotations

import uuid
from typing import Any

from gateway.store.postgres import BOUND_CREDITS, PostgresStore
from schemas.notification import Environment, Notification, Status, TokenKind

BUNDLE = "com.example.credits"
CAP = 20


async def _world(store: PostgresStore) -> tuple[int, str, str]:
    await store.create_team("TEAMCREDIT", "Team")
    app = await store.create_app("TEAMCREDIT", BUNDLE)
    device, _ = await store.create_device(app.app_id)
    token = (await store.issue_token(device.device_id, BUNDLE, Environment.PRODUCTION)).token
    return app.app_id, device.device_id, token


def _note(app_id: int, device_id: str, token: str, apns_id: str | None = None) -> Notification:
    return Notification(
        apns_id=apns_id or str(uuid.uuid4()), app_id=app_id, token=token, topic=BUNDLE,
        payload=b'{"aps":{}}', device_id=device_id, kind=TokenKind.LOCAL,
    )  # fmt: skip


async def _bound_and_pending(store: PostgresStore, token: str) -> tuple[int, int]:
    async with store._conn() as conn:
        row: Any = await conn.fetchrow(
            "SELECT t.pending_bound,"
            " (SELECT count(*) FROM notifications n WHERE n.token = t.token AND n.status = 'pending') AS pending"
            " FROM tokens t WHERE t.token = $1",
            token,
        )
    return int(row["pending_bound"]), int(row["pending"])


async def test_credits_pay_for_rows_without_touching_the_token_row(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, backlog_cap=1000)
    await store.open()
    try:
        app_id, device_id, token = await _world(store)
        assert BOUND_CREDITS >= 2  # with 0 or 1 there is nothing to pay from
        await store.accept(_note(app_id, device_id, token))
        assert await _bound_and_pending(store, token) == (1 + BOUND_CREDITS, 1)
        for _ in range(BOUND_CREDITS):  # paid from the credits: the bound does not move
            await store.accept(_note(app_id, device_id, token))
        assert await _bound_and_pending(store, token) == (1 + BOUND_CREDITS, 1 + BOUND_CREDITS)
        await store.accept(_note(app_id, device_id, token))  # credits spent: one UPDATE, new credits
        assert await _bound_and_pending(store, token) == (2 + 2 * BOUND_CREDITS, 2 + BOUND_CREDITS)

        # A resend fails the COPY on the unique key (no probe yet): the batch is redone and
        # the credits of its tokens are forgotten, never spent twice; the bound stays above.
        first = await store.accept(_note(app_id, device_id, token))
        again = await store.accept(_note(app_id, device_id, token, apns_id=first.apns_id))
        assert again.duplicate and again.id == first.id
        bound, pending = await _bound_and_pending(store, token)
        assert bound >= pending == 3 + BOUND_CREDITS
    finally:
        await store.close()


async def test_the_cap_stays_exact_in_one_process(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn, backlog_cap=CAP)
    await store.open()
    try:
        app_id, device_id, token = await _world(store)
        results = [await store.accept(_note(app_id, device_id, token)) for _ in range(CAP + 5)]
        bound, pending = await _bound_and_pending(store, token)
        assert pending == CAP and bound >= pending
        # The overflow dropped the oldest five (all of one priority).
        statuses = [(await store.status(app_id, r.apns_id)) for r in results]
        assert [s.status for s in statuses if s is not None][:5] == [Status.DROPPED] * 5
        assert all(s is not None and s.status is Status.PENDING for s in statuses[5:])

        # Batches of several rows: an exact check resets the bound to the true count,
        # so credits left from before it must go too (here a single row would pass the cap).
        other_device, _ = await store.create_device(app_id)
        other = (await store.issue_token(other_device.device_id, BUNDLE, Environment.PRODUCTION)).token
        for size in (7, 7, 7, 1, 1):
            await store.accept_many([_note(app_id, other_device.device_id, other) for _ in range(size)])
            bound, pending = await _bound_and_pending(store, other)
            assert pending <= CAP and pending <= bound, (size, pending, bound)
        assert pending == CAP
    finally:
        await store.close()


async def test_two_processes_pass_the_cap_by_at_most_the_other_ones_credits(pg_dsn: str) -> None:
    a = PostgresStore(pg_dsn, backlog_cap=CAP)
    b = PostgresStore(pg_dsn, backlog_cap=CAP)
    await a.open()
    await b.open()
    try:
        app_id, device_id, token = await _world(a)
        accepted = 0
        for i in range(4 * CAP):
            await (a if i % 3 else b).accept(_note(app_id, device_id, token))
            accepted += 1
            _, pending = await _bound_and_pending(a, token)
            assert pending <= CAP + BOUND_CREDITS, (i, pending)
        async with a._conn() as conn:
            counts = dict(
                await conn.fetch("SELECT status, count(*) FROM notifications WHERE token = $1 GROUP BY status", token)
            )
        assert counts["pending"] + counts["dropped"] == accepted  # nothing else happened to them
        assert counts["dropped"] >= accepted - CAP - BOUND_CREDITS
    finally:
        await a.close()
        await b.close()
