"""Feedback REST routes (per app; the app is set on the request by the REST API-key middleware).

GET  /api/v1/feedback?since=<ms>&after=<id>&limit=<n>   invalid-token records, paged by id
PUT  /api/v1/webhook            {"url": ..., "secret": optional}   -> {"url", "secret"}
GET  /api/v1/webhooks/deliveries?state=pending|delivered|dead&limit=<n>
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import msgspec
import orjson
from aiohttp import web

from gateway.store.base import App, Store
from schemas.errors import BadRequestParams, MissingProviderToken, PushgwError
from schemas.feedback import (
    FeedbackPage,
    FeedbackRecord,
    WebhookDeliveries,
    WebhookDelivery,
    WebhookRequest,
    WebhookView,
)

PREFIX = "/api/v1"
MAX_LIMIT = 1000
_STORE: web.AppKey[Store] = web.AppKey("pushgw_feedback_store", Store)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def _encoded(body: msgspec.Struct) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), content_type="application/json")


def app_of(request: web.Request) -> App:
    """The authenticated app: ``request["app"]``, or whatever key the REST middleware used."""
    found = request.get("app")
    if isinstance(found, App):
        return found
    for value in request.values():
        if isinstance(value, App):
            return value
    raise MissingProviderToken("no authenticated app")


def _int(request: web.Request, name: str, default: int, lo: int = 0, hi: int | None = None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequestParams(f"{name} must be an integer") from None
    if value < lo or (hi is not None and value > hi):
        raise BadRequestParams(f"{name} out of range")
    return value


def _store(request: web.Request) -> Store:
    # Routes may be added to the REST app itself or to a sub-app; look in both.
    for app in (request.app, *reversed(request.match_info.apps)):
        if _STORE in app:
            return app[_STORE]
    raise RuntimeError("feedback routes without a store")


def _guard(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable[..., Any]:
    # Also mounted outside the REST middleware (tests, standalone): errors still get an APNs-style body.
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except PushgwError as err:
            return _json(err.body(), err.status)

    return wrapped


async def list_feedback(request: web.Request) -> web.Response:
    app = app_of(request)
    since = _int(request, "since", 0)
    after = _int(request, "after", 0)
    limit = _int(request, "limit", 100, 1, MAX_LIMIT)
    records = await _store(request).list_feedback(app.app_id, since, after, limit)
    items = [FeedbackRecord(id=r.id, token=r.token, reason=r.reason, timestamp=r.at_ms) for r in records]
    next_after = records[-1].id if len(records) == limit else None
    return _encoded(FeedbackPage(feedback=items, next_after=next_after))


async def put_webhook(request: web.Request) -> web.Response:
    app = app_of(request)
    try:
        doc = msgspec.json.decode(await request.read(), type=WebhookRequest)
    except msgspec.DecodeError as exc:
        raise BadRequestParams(f"body must be JSON with an http(s) url: {exc}") from None
    url = doc.url
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # e.g. an unbalanced [ in the host
        raise BadRequestParams("url must be an http(s) URL") from None
    if parts.scheme not in ("http", "https") or not hostname or len(url) > 2048:
        raise BadRequestParams("url must be an http(s) URL")
    secret = doc.secret or secrets.token_urlsafe(32)
    if not 16 <= len(secret) <= 256:
        raise BadRequestParams("secret must be 16..256 characters")
    await _store(request).set_webhook(app.app_id, url, secret)
    return _encoded(WebhookView(url=url, secret=secret))


async def list_deliveries(request: web.Request) -> web.Response:
    app = app_of(request)
    state = request.query.get("state") or None
    if state not in (None, "pending", "delivered", "dead"):
        raise BadRequestParams("state must be pending, delivered or dead")
    limit = _int(request, "limit", 100, 1, MAX_LIMIT)
    jobs = await _store(request).list_webhook_jobs(app.app_id, state, limit)
    items = [
        WebhookDelivery(
            id=j.id,
            state=j.state,  # type: ignore[arg-type]  # the store's three states
            attempts=j.attempts,
            next_attempt_ms=j.next_attempt_ms,
            last_error=j.last_error,
            created_at_ms=j.created_at_ms,
            event=orjson.loads(j.body),
        )
        for j in jobs
    ]
    return _encoded(WebhookDeliveries(deliveries=items))


def _add(app: web.Application, store: Store) -> None:
    app[_STORE] = store
    app.router.add_get(PREFIX + "/feedback", _guard(list_feedback))
    app.router.add_put(PREFIX + "/webhook", _guard(put_webhook))
    app.router.add_get(PREFIX + "/webhooks/deliveries", _guard(list_deliveries))


def add_feedback_routes(app: web.Application, core: Any) -> None:
    """Add the routes to the REST app (``core.store`` is the Store)."""
    _add(app, core.store)


def build_feedback_app(cfg: Any, core_store: Store) -> web.Application:
    """A standalone app with the routes at their full paths (/api/v1/...)."""
    app = web.Application()
    _add(app, core_store)
    return app
