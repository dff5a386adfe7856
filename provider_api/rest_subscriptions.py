"""REST channel subscriptions (what ``POST /api/v1/send/topic`` fans out to)
and notification status.

A channel is an app-scoped name; a token of the app subscribes to it with
``PUT`` and leaves with ``DELETE`` (both idempotent, 204).  Channel names are
1-128 characters of ``A-Z a-z 0-9 . _ : -`` so they are safe in URLs, logs and
Redis keys.
"""

from __future__ import annotations

import re

from aiohttp import web

from provider_api.rest_devices import own_token
from provider_api.rest_digest import digested_view
from provider_api.rest_errors import app_of, context, json_response
from schemas.errors import BadMessageId, BadRequestParams
from schemas.rest import NotificationView

_CHANNEL = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def _channel(request: web.Request) -> str:
    channel = request.match_info["channel"]
    if _CHANNEL.fullmatch(channel) is None:
        raise BadRequestParams("channel must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return channel


async def subscribe(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    channel = _channel(request)
    record = await own_token(ctx, app, request.match_info["token"])
    await ctx.core.store.subscribe(record.token, channel)
    return web.Response(status=204)


async def unsubscribe(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    channel = _channel(request)
    record = await own_token(ctx, app, request.match_info["token"])
    await ctx.core.store.unsubscribe(record.token, channel)
    return web.Response(status=204)


async def notification_status(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    apns_id = request.match_info["apns_id"]
    if _UUID.fullmatch(apns_id) is None:
        raise BadMessageId("apns-id must be a UUID (8-4-4-4-12 hex digits)")
    # The store scopes the lookup by app: another app's id is simply not found.
    st = await ctx.core.store.status(app.app_id, apns_id.lower())
    if st is None:
        return json_response(await digested_view(ctx.core.store, app.app_id, apns_id.lower()))
    view = NotificationView(
        apns_id=st.apns_id,
        token=st.token,
        topic=st.topic,
        priority=st.priority,
        status=st.status.value,
        reason=st.reason,
        timeline=list(st.timeline),
    )
    return json_response(view)


def add_routes(app: web.Application) -> None:
    app.router.add_put("/api/v1/tokens/{token}/subscriptions/{channel}", subscribe)
    app.router.add_delete("/api/v1/tokens/{token}/subscriptions/{channel}", unsubscribe)
    app.router.add_get("/api/v1/notifications/{apns_id}", notification_status)
