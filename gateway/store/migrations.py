"""Numbered SQL migrations and named queries, read from ``gateway/store/sql``.

Layout: ``sql/<backend>/NNN_name.sql`` are migrations applied in number
order; ``sql/<backend>/queries.sql`` (and ``*_queries.sql``) hold named queries, each
introduced by a ``-- name: <name>`` line.  The ``schema_migrations`` table records the
numbers already applied, so opening a store twice applies nothing twice.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sqlite3
from importlib import resources
from typing import Any

SQL_PACKAGE = "gateway.store"
_MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+)\.sql$")
_NAME_RE = re.compile(r"^--\s*name:\s*([a-z0-9_]+)\s*$", re.MULTILINE)

_SCHEMA_MIGRATIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY, name text NOT NULL, applied_at_ms bigint NOT NULL)"
)
# Serialises migrators started at the same time (several processes of a cluster).
_PG_LOCK_KEY = 0x70757368  # "push"


@dataclasses.dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def _sql_dir(backend: str) -> Any:
    return resources.files(SQL_PACKAGE).joinpath("sql", backend)


@functools.cache
def migrations(backend: str) -> tuple[Migration, ...]:
    out = []
    for entry in _sql_dir(backend).iterdir():
        m = _MIGRATION_RE.match(entry.name)
        if m:
            out.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    out.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in out]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in sql/{backend}: {versions}")
    return tuple(out)


@functools.cache
def queries(backend: str) -> dict[str, str]:
    """Named queries of ``sql/<backend>/queries.sql`` and the ``*_queries.sql`` files
    beside it (one per feature, e.g. ``power_queries.sql``)."""
    files = sorted(
        (e for e in _sql_dir(backend).iterdir() if e.name == "queries.sql" or e.name.endswith("_queries.sql")),
        key=lambda e: e.name,
    )
    out: dict[str, str] = {}
    for entry in files:
        parts = _NAME_RE.split(entry.read_text())
        # parts = [preamble, name1, body1, name2, body2, ...]
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if name in out:
                raise RuntimeError(f"query {name!r} defined twice in sql/{backend}")
            out[name] = body.strip().rstrip(";")
    return out


async def migrate_postgres(conn: Any, now_ms: int) -> list[int]:
    """Apply pending migrations on an asyncpg connection; returns the versions applied."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _PG_LOCK_KEY)
        await conn.execute(_SCHEMA_MIGRATIONS)
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for mig in migrations("postgres"):
            if mig.version in done:
                continue
            await conn.execute(mig.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
                mig.version,
                mig.name,
                now_ms,
            )
            applied.append(mig.version)
    return applied


def migrate_sqlite(conn: sqlite3.Connection, now_ms: int) -> list[int]:
    """Apply pending migrations on a sqlite3 connection in autocommit mode."""
    applied: list[int] = []
    conn.execute(_SCHEMA_MIGRATIONS)
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    for mig in migrations("sqlite"):
        if mig.version in done:
            continue
        # executescript commits first; BEGIN IMMEDIATE makes each migration atomic.
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{mig.sql}\n;"
            f"INSERT INTO schema_migrations (version, name, applied_at_ms) "
            f"VALUES ({mig.version}, '{mig.name}', {int(now_ms)});\nCOMMIT;"
        )
        applied.append(mig.version)
    return applied
