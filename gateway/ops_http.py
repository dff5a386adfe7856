"""Health, readiness, version and Prometheus metrics routes for every process.

Liveness (/healthz) answers while the event loop runs.  Readiness (/readyz)
is false (503) while the store or Redis cannot be reached, so a load
balancer stops sending work to a process that would only answer 503.

/metrics is multi-process aware: processes that share a port (several
provider-api processes with SO_REUSEPORT) are started with the same
``metrics_dir``; prometheus_client then keeps each process's values in files
there and every process's /metrics answers with the sum over all of them, so
a scrape that lands on any one of them sees the whole group.

Every request gets a request id (the caller's ``X-Request-Id`` if it sent a
sane one, else a new one): it is in every log record written while the
request runs and in the response's ``X-Request-Id`` header.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from gateway import __version__, logs
from gateway.admin_shards import probe_ready
from gateway.config import Config

BUILD_INFO = Gauge("pushgw_build_info", "Always 1; the version label says which pushgw runs", ["version"],
                   multiprocess_mode="max")  # fmt: skip
READY = Gauge("pushgw_ready", "1 while the last readiness check passed (store and Redis reachable)",
              multiprocess_mode="min")  # fmt: skip
BUILD_INFO.labels(__version__).set(1)
HTTP_REQUESTS = Counter("pushgw_http_requests_total", "Requests on the REST/ops port by HTTP status", ["status"])
HTTP_SECONDS = Histogram(
    "pushgw_http_request_duration_seconds",
    "Time to answer a request on the REST/ops port",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def metrics_body() -> bytes:
    """This process's metrics, or the whole group's when ``metrics_dir`` is set."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@web.middleware
async def request_id_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    given = request.headers.get("X-Request-Id", "")
    rid = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
    token = logs.request_id.set(rid)
    started = time.perf_counter()
    status = 500
    try:
        resp = await handler(request)
        status = resp.status
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = rid
        raise
    finally:
        logs.request_id.reset(token)
        HTTP_REQUESTS.labels(str(status)).inc()
        HTTP_SECONDS.observe(time.perf_counter() - started)
    resp.headers["X-Request-Id"] = rid
    return resp


def add_ops_routes(app: web.Application, cfg: Config, core: Any) -> None:
    # Outermost, so the id is set before any other middleware logs.
    app.middlewares.insert(0, request_id_middleware)

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_request: web.Request) -> web.Response:
        checks = await probe_ready(core)
        ready = all(v == "ok" for v in checks.values())
        READY.set(1 if ready else 0)
        return web.json_response({"ready": ready, "checks": checks}, status=200 if ready else 503)

    async def version(_request: web.Request) -> web.Response:
        return web.json_response({"name": "pushgw", "version": __version__, "embedded": cfg.embedded})

    async def metrics(_request: web.Request) -> web.Response:
        return web.Response(body=metrics_body(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/version", version)
    app.router.add_get("/metrics", metrics)
