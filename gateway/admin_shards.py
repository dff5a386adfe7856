"""Shard heartbeats: which connection shards exist, how many sockets each
holds, and whether they are healthy.

Every shard process writes a small record every ``BEAT_S`` seconds: to the
Redis hash ``pushgw:shards`` in a cluster, to a process-local table when
embedded (the admin API then runs in the same process).  A shard whose
record is older than ``STALE_AFTER_S`` is reported ``down``; records older
than ``FORGET_AFTER_S`` are dropped, so a shard id that is gone for good
leaves the list after a while.  The record also carries the shard's own
readiness (store and Redis reachable from that process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any

import orjson
from prometheus_client import Gauge

log = logging.getLogger(__name__)

BEAT_S = 2.0
STALE_AFTER_S = 3 * BEAT_S
FORGET_AFTER_S = 3600.0
REDIS_KEY = "pushgw:shards"

CONNECTIONS = Gauge(
    "pushgw_shard_connections", "Device WebSockets open on this shard", ["shard"], multiprocess_mode="livesum"
)

_local: dict[str, dict[str, Any]] = {}  # embedded: shard id -> record


def _redis(core: Any) -> Any:
    return getattr(core.bus, "client", None)


#: Each readiness check's bound.  The checks run side by side, so /readyz answers
#: within this (a probe with a 2 s timeout got no answer when the two ran one after
#: the other, 2 s each, on a loaded machine).
CHECK_TIMEOUT_S = 1.5


async def _check(probe: Any) -> str:
    try:
        await asyncio.wait_for(probe(), timeout=CHECK_TIMEOUT_S)
        return "ok"
    except Exception as exc:  # any failure means not ready
        return f"unavailable: {type(exc).__name__}"


async def probe_ready(core: Any) -> dict[str, str]:
    """Readiness checks of this process: store and (when there is one) Redis."""
    probes: dict[str, Any] = {"store": core.store.ping}
    ping = getattr(core.bus, "ping", None)
    client = _redis(core)
    if ping is None and client is not None:
        ping = client.ping
    if ping is not None:
        probes["redis"] = ping
    results = await asyncio.gather(*(_check(p) for p in probes.values()))
    return dict(zip(probes, results, strict=True))


class ShardBeacon:
    """Runs in a shard process; ``shard`` is the ShardServer (``connections``)."""

    def __init__(self, core: Any, shard: Any, ops_port: int) -> None:
        self.core = core
        self.shard = shard
        self.shard_id = str(core.cfg.shard_id)
        self.started_ms = int(time.time() * 1000)
        self.ops_port = ops_port
        self._task: asyncio.Task[None] | None = None

    def record(self, checks: dict[str, str]) -> dict[str, Any]:
        return {
            "shard": self.shard_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "ws_port": getattr(self.shard, "port", self.core.cfg.ws_port),
            "ops_port": self.ops_port,
            "connections": int(self.shard.connections),
            "ready": all(v == "ok" for v in checks.values()),
            "checks": checks,
            "started_ms": self.started_ms,
            "seen_ms": int(time.time() * 1000),
        }

    async def beat_once(self) -> None:
        checks = await probe_ready(self.core)
        rec = self.record(checks)
        CONNECTIONS.labels(self.shard_id).set(rec["connections"])
        client = _redis(self.core)
        if client is None:
            _local[self.shard_id] = rec
            return
        await client.hset(REDIS_KEY, self.shard_id, orjson.dumps(rec))

    async def _loop(self) -> None:
        while True:
            try:
                await self.beat_once()
            except Exception as exc:  # Redis down: the record goes stale, which is the signal
                log.debug("shard heartbeat failed: %s", exc)
            await asyncio.sleep(BEAT_S)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="shard-beacon")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        # A clean stop removes the record: the shard is gone, not failing.
        client = _redis(self.core)
        if client is None:
            _local.pop(self.shard_id, None)
        else:
            with contextlib.suppress(Exception):
                await client.hdel(REDIS_KEY, self.shard_id)


async def list_shards(core: Any) -> list[dict[str, Any]]:
    """Every known shard with ``status`` up | down | not ready, by shard id."""
    client = _redis(core)
    if client is None:
        records = list(_local.values())
    else:
        raw = await client.hgetall(REDIS_KEY)
        records = [orjson.loads(v) for v in raw.values()]
    now = time.time() * 1000
    out = []
    for rec in records:
        age_s = (now - rec["seen_ms"]) / 1000
        if age_s > FORGET_AFTER_S:
            if client is not None:
                await client.hdel(REDIS_KEY, rec["shard"])
            continue
        rec["age_s"] = round(age_s, 1)
        rec["status"] = "down" if age_s > STALE_AFTER_S else ("up" if rec["ready"] else "not ready")
        out.append(rec)
    out.sort(key=lambda r: (len(r["shard"]), r["shard"]))
    return out
