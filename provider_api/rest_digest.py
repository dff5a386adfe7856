"""REST digest rule of the calling app (gateway/digest.py applies it).

``PUT /api/v1/digest`` sets it (opt in), ``GET`` shows it (404 when the app
has none), ``DELETE`` removes it (pushes are sent one by one again; windows
already open are still summarized when they end).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from gateway.digest import item_status
from gateway.store.schedules_store import DigestRule
from provider_api.rest_errors import RestContext, app_of, context, json_response
from schemas.errors import NotFound
from schemas.notification import Status, TimelineEvent
from schemas.rest import NotificationView, decode
from schemas.rest_schedules import DigestRuleRequest, DigestRuleView

#: What a digest folds: alerts (the summary is an alert to the same topic).
DIGEST_PUSH_TYPES = ("alert",)


def _view(rule: DigestRule) -> DigestRuleView:
    return DigestRuleView(
        window_s=rule.window_s,
        max_priority=rule.max_priority,
        push_types=list(rule.push_types),
        updated_at_ms=rule.updated_at_ms,
    )


def _forget(ctx: RestContext, app_id: int) -> None:
    # This process applies the change at once; others within the rule cache TTL.
    forget = getattr(ctx.core.engine, "forget", None)
    if forget is not None:
        forget(app_id)


async def put_rule(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    req = decode(await request.read(), DigestRuleRequest)
    rule = DigestRule(
        app_id=app.app_id, window_s=req.window_s, max_priority=req.max_priority, push_types=DIGEST_PUSH_TYPES,
        updated_at_ms=int(time.time() * 1000),
    )  # fmt: skip
    stored = await ctx.core.store.set_digest_rule(rule)
    _forget(ctx, app.app_id)
    return json_response(_view(stored))


async def get_rule(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    rule = await ctx.core.store.get_digest_rule(app.app_id)
    if rule is None:
        raise NotFound("this app has no digest rule")
    return json_response(_view(rule))


async def delete_rule(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    if not await ctx.core.store.delete_digest_rule(app.app_id):
        raise NotFound("this app has no digest rule")
    _forget(ctx, app.app_id)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_put("/api/v1/digest", put_rule)
    app.router.add_get("/api/v1/digest", get_rule)
    app.router.add_delete("/api/v1/digest", delete_rule)


async def digested_view(store: Any, app_id: int, apns_id: str) -> NotificationView:
    """Status of a push the digest rule held (the status API's fallback):
    ``digesting`` while its window is open, then ``digested`` with the
    summary's apns-id in ``summary_apns_id``, or ``discarded`` (reason
    ``Unregistered``) when its token was gone by the window's end."""
    item = await store.get_digest_item(app_id, apns_id)
    if item is None:
        raise NotFound("no such notification")
    status = item_status(item)
    timeline = [TimelineEvent("accepted", item.accepted_at_ms)]
    if status is not Status.DIGESTING and item.summarized_at_ms is not None:
        timeline.append(TimelineEvent(status.value, item.summarized_at_ms))
    return NotificationView(
        apns_id=item.apns_id,
        token=item.token,
        topic=item.topic,
        priority=item.priority,
        status=status.value,
        reason=item.dropped_reason,
        timeline=timeline,
        summary_apns_id=item.summary_apns_id or None,
    )
