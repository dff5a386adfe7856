"""Health, readiness, version and Prometheus metrics routes for every process.

Liveness (/healthz) answers while the event loop runs.  Readiness (/readyz)
is false (503) while the store or the bus cannot be reached, so a load
balancer stops sending work to a process that would only answer 503.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway import __version__
from gateway.config import Config


def add_ops_routes(app: web.Application, cfg: Config, core: Any) -> None:
    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks: dict[str, str] = {}
        try:
            await asyncio.wait_for(core.store.ping(), timeout=2.0)
            checks["store"] = "ok"
        except Exception as exc:  # any failure means not ready
            checks["store"] = f"unavailable: {type(exc).__name__}"
        ping_bus = getattr(core.bus, "ping", None)
        if ping_bus is not None:
            try:
                await asyncio.wait_for(ping_bus(), timeout=2.0)
                checks["bus"] = "ok"
            except Exception as exc:
                checks["bus"] = f"unavailable: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def version(_request: web.Request) -> web.Response:
        return web.json_response({"name": "pushgw", "version": __version__, "embedded": cfg.embedded})

    async def metrics(_request: web.Request) -> web.Response:
        body = generate_latest()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
