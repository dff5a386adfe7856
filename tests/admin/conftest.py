from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.admin.support import Rig, provisioned_rig, rig_config


@pytest.fixture(params=["embedded", "cluster"])
async def rig(request, tmp_path, pg_dsn: str, redis_url: str) -> AsyncIterator[Rig]:  # type: ignore[no-untyped-def]
    """The gateway on SQLite + in-process bus, and on PostgreSQL + Redis."""
    cfg = rig_config(request.param, tmp_path, pg_dsn, redis_url)
    async with provisioned_rig(cfg) as r:
        yield r
