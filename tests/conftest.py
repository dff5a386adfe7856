"""Shared fixtures: real PostgreSQL and Redis started by scripts/with-test-services.sh.

Tests never fall back to a server that happens to run on this machine: if
TEST_PG_DSN / TEST_REDIS_URL are not set the fixtures fail with a clear
message (run the suite with `make test`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import redis.asyncio as aioredis
import uvloop
from hypothesis import HealthCheck, settings

# Property tests check behaviour, not speed: on the shared 2-core machine (and
# in CI) generating examples or running one can be slow, which Hypothesis
# would otherwise report as a failure (too_slow, DeadlineExceeded).
settings.register_profile("pushgw", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("pushgw")


def pytest_asyncio_loop_factories(config, item):  # type: ignore[no-untyped-def]
    return {"uvloop": uvloop.new_event_loop}


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the tests with `make test` (scripts/with-test-services.sh)")
    return value


@pytest.fixture
async def pg_dsn() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for this test."""
    admin_dsn = _env("TEST_PG_DSN")
    name = "t_" + uuid.uuid4().hex[:16]
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base, _, _ = admin_dsn.rpartition("/")
    yield f"{base}/{name}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """The throwaway Redis, flushed before the test."""
    url = _env("TEST_REDIS_URL")
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushall()
    finally:
        await client.aclose()
    yield url


@pytest.fixture
def sqlite_path(tmp_path) -> str:  # type: ignore[no-untyped-def]
    return str(tmp_path / "pushgw.sqlite3")
