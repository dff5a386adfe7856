"""/readyz is false while the store or Redis is unreachable, and true again after.

Stops the throwaway Redis and PostgreSQL under a running gateway (every
role, cluster backends), watching readiness of the process and the shard's
heartbeat; both servers are always restarted, even when an assertion fails.
"""

from __future__ import annotations

import aiohttp

from tests.admin.support import Rig, eventually, rig_config
from tests.fault.support import pg_running, pg_start, pg_stop, redis_running, redis_start, redis_stop


async def _ready(rig: Rig) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{rig.base}/readyz") as r:
            return r.status, await r.json()


async def test_readiness_follows_store_and_redis(tmp_path, pg_dsn: str, redis_url: str) -> None:  # type: ignore[no-untyped-def]
    rig = Rig(rig_config("cluster", tmp_path, pg_dsn, redis_url))
    await rig.start()
    try:
        status, body = await _ready(rig)
        assert status == 200 and body == {"ready": True, "checks": {"store": "ok", "redis": "ok"}}

        await redis_stop()
        try:
            status, body = await _ready(rig)
            assert status == 503 and body["ready"] is False
            assert body["checks"]["store"] == "ok" and body["checks"]["redis"].startswith("unavailable")
        finally:
            if not redis_running():
                await redis_start()

        async def ready_again() -> bool:
            return (await _ready(rig))[0] == 200

        await eventually(ready_again, 30, "ready after Redis restart")

        await pg_stop()
        try:
            status, body = await _ready(rig)
            assert status == 503 and body["checks"]["store"].startswith("unavailable")
            assert body["checks"]["redis"] == "ok"
        finally:
            if not pg_running():
                await pg_start()
        await eventually(ready_again, 30, "ready after PostgreSQL restart")
    finally:
        await rig.stop()
