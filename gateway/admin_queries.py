"""The admin API's own SQL, run on the store's connections.

The store protocol covers the delivery path; what only operators need
(statistics, search, tenant edits) lives in ``admin_postgres.sql`` and
``admin_sqlite.sql`` (named queries, ``-- name:`` lines as in the store) and
runs through the backend's own connection pool or SQLite thread, so it shares
the store's error translation (``StoreUnavailable``) and never opens a
second connection to the database.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from typing import Any

from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore

_NAME_RE = re.compile(r"^--\s*name:\s*([a-z0-9_]+)\s*$", re.MULTILINE)


@functools.cache
def admin_queries(backend: str) -> dict[str, str]:
    text = resources.files("gateway").joinpath(f"admin_{backend}.sql").read_text()
    parts = _NAME_RE.split(text)
    out: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in out:
            raise RuntimeError(f"admin query {name!r} defined twice in admin_{backend}.sql")
        out[name] = body.strip().rstrip(";")
    return out


class AdminQueries:
    """``fetch`` returns rows as dicts; ``execute`` returns the changed row count."""

    def __init__(self, store: Any) -> None:
        self.store = store
        if isinstance(store, PostgresStore):
            self.backend = "postgres"
        elif isinstance(store, SqliteStore):
            self.backend = "sqlite"
        else:
            raise TypeError(f"no admin queries for store {type(store).__name__}")
        self.q = admin_queries(self.backend)

    async def fetch(self, name: str, *args: Any) -> list[dict[str, Any]]:
        sql = self.q[name]
        if self.backend == "postgres":
            async with self.store._conn() as conn:
                return [dict(r) for r in await conn.fetch(sql, *args)]
        store = self.store
        return await store._run(lambda: [dict(r) for r in store.db.execute(sql, args).fetchall()])

    async def value(self, name: str, *args: Any) -> Any:
        rows = await self.fetch(name, *args)
        return next(iter(rows[0].values())) if rows else None

    async def execute(self, name: str, *args: Any) -> int:
        sql = self.q[name]
        if self.backend == "postgres":
            async with self.store._conn() as conn:
                tag = await conn.execute(sql, *args)
            return int(tag.rsplit(" ", 1)[-1]) if tag and tag[-1].isdigit() else 0
        store = self.store
        return int(await store._run(lambda: store.db.execute(sql, args).rowcount))
