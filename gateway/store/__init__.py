"""The durable store: ``open_store(cfg)`` picks the backend.

PostgreSQL when ``cfg.database_url`` is set (cluster), else SQLite at
``<cfg.data_dir>/pushgw.sqlite3`` (embedded default).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.config import Config
from gateway.store.base import Store

SQLITE_FILENAME = "pushgw.sqlite3"


async def open_store(cfg: Config) -> Store:
    """Build the configured store and ``open()`` it (connect + migrate)."""
    store: Store
    if cfg.database_url:
        from gateway.store.postgres import PostgresStore

        store = PostgresStore(
            cfg.database_url,
            retention_s=cfg.retention_s,
            backlog_cap=cfg.backlog_cap,
            group_commit_max=cfg.group_commit_max,
            group_commit_flushers=cfg.group_commit_flushers,
            analyze_interval_s=cfg.pg_analyze_interval_s,
        )
    else:
        from gateway.store.sqlite import SqliteStore

        data_dir = Path(cfg.data_dir)
        await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
        store = SqliteStore(
            str(data_dir / SQLITE_FILENAME),
            retention_s=cfg.retention_s,
            backlog_cap=cfg.backlog_cap,
            group_commit_max=cfg.group_commit_max,
        )
    await store.open()
    return store


__all__ = ["Store", "open_store"]
