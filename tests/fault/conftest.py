"""Fixture for the fault suite: the cluster topology as separate child processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fault.support import Cluster, ensure_services


@pytest.fixture
async def cluster(pg_dsn: str, redis_url: str, tmp_path) -> AsyncIterator[Cluster]:  # type: ignore[no-untyped-def]
    # The worker is part of the topology: its route repair delivers commits
    # whose routing died with an API process.
    c = Cluster(pg_dsn, redis_url, tmp_path, worker=True)
    try:
        await c.start()
        yield c
    finally:
        await c.close()
        await ensure_services()  # other tests follow in the same session
