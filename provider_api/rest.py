"""The REST API app (aiohttp, HTTP/1.1, JSON), under /api/v1.

``build_rest_app(cfg, core)`` returns the aiohttp application; the composition
root (gateway/cli.py) adds the feedback and ops routes to it and runs it.
Its middleware authenticates every ``/api/`` request by API key and turns
every error into Apple's ``{"reason": ...}`` body (provider_api/rest_errors.py);
the other paths (/openapi.json, /docs, ops routes) are public.

Resources live in one module each: rest_devices (devices and tokens),
rest_subscriptions (channel subscriptions, notification status), rest_send
(sends), rest_schedules (recurring schedules), rest_digest (digest rule).  Rate limits are in provider_api/ratelimit.py.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.config import Config
from provider_api import rest_devices, rest_digest, rest_quiet_hours, rest_schedules, rest_send, rest_subscriptions
from provider_api.openapi import docs_html, openapi_json
from provider_api.ratelimit import RateLimits
from provider_api.rest_errors import CONTEXT, MAX_BODY, RestContext, rest_middleware


async def _openapi(_request: web.Request) -> web.Response:
    return web.Response(body=openapi_json(), content_type="application/json")


async def _docs(_request: web.Request) -> web.Response:
    return web.Response(text=docs_html(), content_type="text/html")


def build_rest_app(cfg: Config, core: Any, *, limits: RateLimits | None = None) -> web.Application:
    """The REST app for ``core`` (a ``gateway.runtime.Core``).

    ``limits`` replaces the limiter built from ``cfg`` (tests pass one with a
    fake clock); the app closes whichever it uses on cleanup.
    """
    app = web.Application(middlewares=[rest_middleware], client_max_size=MAX_BODY)
    ctx = RestContext(cfg=cfg, core=core, limits=limits or RateLimits.from_config(cfg))
    app[CONTEXT] = ctx
    rest_devices.add_routes(app)
    rest_quiet_hours.add_routes(app)
    rest_subscriptions.add_routes(app)
    rest_send.add_routes(app)
    rest_schedules.add_routes(app)
    rest_digest.add_routes(app)
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/docs", _docs)

    async def close_limits(_app: web.Application) -> None:
        await ctx.limits.close()

    app.on_cleanup.append(close_limits)
    return app
