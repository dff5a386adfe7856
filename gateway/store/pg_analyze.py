"""Keep PostgreSQL's planner statistics in step with fast-growing tables.

Why: autovacuum analyzes a table only after ``50 + 10 %`` of its rows changed
*and* its next round comes (``autovacuum_naptime``, 60 s by default).  A
fresh deployment, or any table that grows from a few rows to tens of
thousands in seconds (a store-and-forward burst, a reconnect storm after it),
is planned meanwhile with the statistics of the nearly empty table: every
index looks equally cheap and PostgreSQL picked one that filters the whole
pending set for each device.  Measured in the offline-drain scenario
(50,000 stored rows): one backlog read of 117 devices took 8.2 s instead of
~10 ms, and the drain fell from ~8,900/s to ~1,900/s.

So every process holding a store looks at ``pg_stat_user_tables`` every few
seconds and runs ``ANALYZE`` on the tables whose modifications since the
last analysis exceed ``MIN_CHANGED + GROWTH_FRACTION * rows``: the rule of
autovacuum, with a shorter wait.  A transaction-scoped advisory lock keeps
several processes from analyzing at once.

The keeper's ANALYZE samples ``300 * KEEPER_STATISTICS_TARGET`` rows (3,000)
instead of the default 30,000.  Its job is to fix gross misestimates (a
table planned as empty that holds 50,000 rows), for which 3,000 rows are
plenty, and the full sample is expensive: measured on 60,000 notification
rows, 450 ms of server CPU per ANALYZE against 38 ms (sorting 30,000 text
values per column), which a fresh deployment under load pays every few
seconds while the table grows (~23 us per accepted request in `make
bench-provider`).  Autovacuum still analyzes with the configured target on
its own schedule, so the finer statistics come back when it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

#: The tables whose plans matter on the delivery path and that can grow fast.
WATCHED_TABLES = ("notifications", "tokens", "devices", "subscriptions", "digest_items")
MIN_CHANGED = 1000
GROWTH_FRACTION = 0.2
#: default_statistics_target for the keeper's own ANALYZE (PostgreSQL's is 100).
KEEPER_STATISTICS_TARGET = 10
#: pg_try_advisory_xact_lock key (any constant unique to this purpose).
_LOCK_KEY = 0x70757368_616E6C7A  # "push" "anlz"

_STATS_QUERY = """
SELECT c.relname, s.n_mod_since_analyze, c.reltuples
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND c.relname = ANY($1::text[])
"""


@dataclass(frozen=True, slots=True)
class TableStats:
    name: str
    changed_since_analyze: int
    rows_at_last_analyze: float  # pg_class.reltuples: -1 when never analyzed


def tables_to_analyze(stats: Sequence[TableStats]) -> list[str]:
    """The tables whose statistics are stale by autovacuum's rule (pure)."""
    due = []
    for t in stats:
        rows = max(t.rows_at_last_analyze, 0.0)
        if t.changed_since_analyze >= MIN_CHANGED + GROWTH_FRACTION * rows:
            due.append(t.name)
    return due


class StatisticsKeeper:
    """A background task: ``ANALYZE`` the watched tables when they are stale."""

    def __init__(self, acquire: Callable[[], Any], interval_s: float) -> None:
        self._acquire = acquire  # () -> async context manager yielding an asyncpg connection
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.analyzed = 0  # ANALYZE statements run by this process (tests, logs)

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="pg-statistics-keeper")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store unreachable, a restart: try again next round
                log.debug("statistics check failed: %s", exc)

    async def check_once(self) -> list[str]:
        """Look once; analyze what is stale.  Returns the tables analyzed."""
        async with self._acquire() as conn:
            rows = await conn.fetch(_STATS_QUERY, list(WATCHED_TABLES))
            due = tables_to_analyze([TableStats(r[0], int(r[1] or 0), float(r[2])) for r in rows])
            if not due or not await _analyze(conn, due):
                return []
        self.analyzed += len(due)
        log.info("analyzed %s (statistics were stale)", ", ".join(due))
        return due


async def _analyze(conn: Any, tables: list[str]) -> bool:
    """ANALYZE ``tables`` unless another process is at it (False then)."""
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _LOCK_KEY):
            return False
        await conn.execute(f"SET LOCAL default_statistics_target = {KEEPER_STATISTICS_TARGET}")
        for name in tables:
            # The names come from WATCHED_TABLES, never from input.
            await conn.execute(f'ANALYZE "{name}"')
    return True


__all__ = ["WATCHED_TABLES", "StatisticsKeeper", "TableStats", "tables_to_analyze"]
