"""SqliteStore's power-aware delivery methods (quiet hours, background
budget, Live Activity order); the rules are in ``power_rules``.  A mixin, so
the store module itself only gains one base class.  Each method is one
``BEGIN IMMEDIATE`` transaction on the store's single thread."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.store import power_rules as rules
from gateway.store.migrations import queries
from schemas.quiet_hours import QuietHours

Q = queries("sqlite")
T = TypeVar("T")


class PowerSqliteMixin:
    if TYPE_CHECKING:

        @property
        def db(self) -> sqlite3.Connection: ...

        async def _run(self, fn: Callable[..., T], *args: Any) -> T: ...

        def _tx(self) -> contextlib.AbstractContextManager[None]: ...

        def _exec(self, name: str, *args: Any) -> int: ...

    async def get_quiet_hours(self, device_id: str) -> QuietHours | None:
        return await self._run(self._get_quiet_hours, device_id)

    def _get_quiet_hours(self, device_id: str) -> QuietHours | None:
        row = self.db.execute(Q["get_quiet_hours"], (device_id,)).fetchone()
        if row is None or row["quiet_tz"] is None:
            return None
        return QuietHours(row["quiet_start_min"], row["quiet_end_min"], row["quiet_tz"])

    async def set_quiet_hours(self, device_id: str, quiet: QuietHours | None) -> None:
        start, end, tz = (quiet.start_min, quiet.end_min, quiet.tz) if quiet is not None else (None, None, None)
        now_ms = time.time_ns() // 1_000_000
        await self._run(self._exec_one, "set_quiet_hours", (device_id, start, end, tz, now_ms))

    def _exec_one(self, name: str, args: tuple[Any, ...]) -> None:
        self.db.execute(Q[name], args)

    async def admit_background(
        self, device_id: str, ids: Sequence[int], budget: int, window_ms: int, now_ms: int
    ) -> tuple[list[int], int | None]:
        return await self._run(self._admit_background, device_id, list(ids), budget, window_ms, now_ms)

    def _admit_background(
        self, device_id: str, ids: list[int], budget: int, window_ms: int, now_ms: int
    ) -> tuple[list[int], int | None]:
        db = self.db
        with self._tx():
            db.execute(Q["background_forget"], (device_id, now_ms - window_ms))
            sent = {r["notification_id"]: r["at_ms"] for r in db.execute(Q["background_recent"], (device_id,))}
            counted, over, retry_at_ms = rules.background_budget(sent, ids, budget, window_ms, now_ms)
            for i in counted:
                db.execute(Q["background_record"], (device_id, i, now_ms))
            if over:
                passing = json.dumps([i for i in ids if i not in over])
                db.execute(Q["background_supersede"], (device_id, max(over), now_ms, passing))
        return over, retry_at_ms

    async def admit_live_activities(self, updates: Sequence[tuple[int, str, str, float]], now_ms: int) -> list[int]:
        return await self._run(self._admit_live_activities, sorted(updates), now_ms)

    def _admit_live_activities(self, updates: list[tuple[int, str, str, float]], now_ms: int) -> list[int]:
        db = self.db
        refused: list[int] = []
        with self._tx():
            for notification_id, token, event, timestamp in updates:
                row = db.execute(Q["activity_state"], (token,)).fetchone()
                state = (row["last_timestamp"], row["ended_id"]) if row is not None else None
                status, new = rules.activity_order(state, notification_id, event, timestamp)
                if status is not None:
                    refused.append(notification_id)
                    reason = rules.refusal_reason(status)
                    db.execute(Q["settle_refused"], (notification_id, status.value, reason, now_ms))
                elif new is not None and new != state:
                    db.execute(Q["activity_save"], (token, new[0], new[1], now_ms))
        return refused

    async def purge_power_state(self, older_than_ms: int, budget_from_ms: int, limit: int = 10_000) -> int:
        purged = await self._run(self._exec, "purge_live_activities", older_than_ms, limit)
        return purged + await self._run(self._exec, "purge_background_sends", budget_from_ms, limit)
