"""PostgresStore's power-aware delivery methods (quiet hours, background
budget, Live Activity order); the rules are in ``power_rules``.  A mixin, so
the store module itself only gains one base class."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from gateway.store import power_rules as rules
from gateway.store.migrations import queries
from schemas.quiet_hours import QuietHours

Q = queries("postgres")


class PowerPostgresMixin:
    if TYPE_CHECKING:

        def _conn(self) -> AbstractAsyncContextManager[Any]: ...

        async def _execute(self, name: str, *args: Any) -> int: ...

    async def get_quiet_hours(self, device_id: str) -> QuietHours | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(Q["get_quiet_hours"], device_id)
        if row is None or row["quiet_tz"] is None:
            return None
        return QuietHours(row["quiet_start_min"], row["quiet_end_min"], row["quiet_tz"])

    async def set_quiet_hours(self, device_id: str, quiet: QuietHours | None) -> None:
        now_ms = time.time_ns() // 1_000_000
        start, end, tz = (quiet.start_min, quiet.end_min, quiet.tz) if quiet is not None else (None, None, None)
        async with self._conn() as conn:
            await conn.execute(Q["set_quiet_hours"], device_id, start, end, tz, now_ms)

    async def admit_background(
        self, device_id: str, ids: Sequence[int], budget: int, window_ms: int, now_ms: int
    ) -> tuple[list[int], int | None]:
        async with self._conn() as conn, conn.transaction():
            await conn.execute(Q["lock_device_budget"], device_id)
            await conn.execute(Q["background_forget"], device_id, now_ms - window_ms)
            sent = {r["notification_id"]: r["at_ms"] for r in await conn.fetch(Q["background_recent"], device_id)}
            counted, over, retry_at_ms = rules.background_budget(sent, ids, budget, window_ms, now_ms)
            if counted:
                await conn.executemany(Q["background_record"], [(device_id, i, now_ms) for i in counted])
            if over:
                passing = [i for i in ids if i not in over]
                await conn.execute(Q["background_supersede"], device_id, max(over), now_ms, passing)
        return over, retry_at_ms

    async def admit_live_activities(self, updates: Sequence[tuple[int, str, str, float]], now_ms: int) -> list[int]:
        refused: list[int] = []
        async with self._conn() as conn, conn.transaction():
            for notification_id, token, event, timestamp in sorted(updates):
                row = await conn.fetchrow(Q["activity_state"], token)
                state = (row["last_timestamp"], row["ended_id"]) if row is not None else None
                status, new = rules.activity_order(state, notification_id, event, timestamp)
                if status is not None:
                    refused.append(notification_id)
                    reason = rules.refusal_reason(status)
                    await conn.execute(Q["settle_refused"], notification_id, status.value, reason, now_ms)
                elif new is not None and new != state:
                    await conn.execute(Q["activity_save"], token, new[0], new[1], now_ms)
        return refused

    async def purge_power_state(self, older_than_ms: int, budget_from_ms: int, limit: int = 10_000) -> int:
        purged = await self._execute("purge_live_activities", older_than_ms, limit)
        return purged + await self._execute("purge_background_sends", budget_from_ms, limit)
