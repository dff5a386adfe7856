"""REST device and token management.

Devices get credentials for the WebSocket (returned once, stored hashed) and
local tokens bound to one topic and environment.  Real iPhone tokens are
registered as kind ``apns`` and relayed to Apple.

Isolation: an app only ever sees its own devices and tokens.  Someone
else's device or token answers exactly like one that does not exist
(``404 NotFound``), so a key cannot probe for other apps' identifiers.
"""

from __future__ import annotations

import time

from aiohttp import web

from gateway.apns_bridge.invalidation import token_invalidated
from gateway.authorize import normalize_token
from gateway.store.base import App, Device, DeviceToken
from provider_api.rest_errors import RestContext, app_of, context, json_response
from schemas.errors import NotFound, TopicDisallowed
from schemas.push_types import TOPIC_SUFFIX
from schemas.rest import (
    ApnsTokenRequest,
    DeviceCredentials,
    DeviceInfo,
    IssueTokenRequest,
    RegisterDeviceRequest,
    TokenInfo,
    decode,
)

_SUFFIXES = frozenset(s for s in TOPIC_SUFFIX.values() if s)


def token_info(t: DeviceToken) -> TokenInfo:
    return TokenInfo(
        token=t.token,
        topic=t.topic,
        environment=t.environment,
        kind=t.kind,
        active=t.active,
        device_id=t.device_id,
        user_id=t.user_id,
        invalidated_at_ms=t.invalidated_at_ms,
    )


def check_topic(app: App, topic: str) -> None:
    """A token may be bound to the app's bundle id, or to it plus a push-type suffix."""
    if topic == app.bundle_id:
        return
    if topic.startswith(app.bundle_id) and topic[len(app.bundle_id) :] in _SUFFIXES:
        return
    raise TopicDisallowed(f"topic {topic[:80]!r} does not belong to this app")


async def own_device(ctx: RestContext, app: App, device_id: str) -> Device:
    device = await ctx.core.store.get_device(device_id)
    if device is None or device.app_id != app.app_id:
        raise NotFound("no such device")
    return device


async def own_token(ctx: RestContext, app: App, token: str) -> DeviceToken:
    try:
        normalized = normalize_token(token)
    except Exception as exc:  # a malformed token cannot exist either
        raise NotFound("no such token") from exc
    record = await ctx.core.store.get_token(normalized)
    if record is None or record.app_id != app.app_id:
        raise NotFound("no such token")
    return record


def _forget(ctx: RestContext, token: str) -> None:
    # The resolver caches token records; an unregistered token must fail at
    # once in this process (other processes see it within the cache TTL).
    invalidate = getattr(ctx.core.resolver, "invalidate", None)
    if invalidate is not None:
        invalidate(token)


async def register_device(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    req = decode(await request.read(), RegisterDeviceRequest)
    device, secret = await ctx.core.store.create_device(app.app_id, req.user_id)
    return json_response(DeviceCredentials(device_id=device.device_id, secret=secret), status=201)


async def get_device(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    device = await own_device(ctx, app, request.match_info["device_id"])
    tokens = await ctx.core.store.list_device_tokens(device.device_id)
    return json_response(
        DeviceInfo(
            device_id=device.device_id,
            user_id=device.user_id,
            created_at_ms=device.created_at_ms,
            tokens=[token_info(t) for t in tokens],
        )
    )


async def delete_device(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    device = await own_device(ctx, app, request.match_info["device_id"])
    for t in await ctx.core.store.delete_device(device.device_id):
        _forget(ctx, t.token)
        # Feedback (and the app's webhook) learn of every token that ended.
        await token_invalidated(ctx.core.store, t.app_id, t.token, "DeviceDeleted", t.invalidated_at_ms)
    return web.Response(status=204)


async def issue_token(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    device = await own_device(ctx, app, request.match_info["device_id"])
    req = decode(await request.read(), IssueTokenRequest)
    check_topic(app, req.topic)
    token = await ctx.core.store.issue_token(device.device_id, req.topic, req.environment)
    return json_response(token_info(token), status=201)


async def register_apns_token(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    req = decode(await request.read(), ApnsTokenRequest)
    token = normalize_token(req.token)
    check_topic(app, req.topic)
    existing = await ctx.core.store.get_token(token)
    if existing is not None and existing.app_id != app.app_id:
        # Tokens are per app per device at Apple: one app cannot take over
        # another's (the answer does not say whether it exists).
        raise TopicDisallowed("token is registered to another app")
    record = await ctx.core.store.register_apns_token(app.app_id, token, req.topic, req.environment, req.user_id)
    _forget(ctx, token)  # it may have been cached as inactive
    return json_response(token_info(record), status=201)


async def delete_token(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    record = await own_token(ctx, app, request.match_info["token"])
    at_ms = await ctx.core.store.unregister_token(record.token, int(time.time() * 1000))
    _forget(ctx, record.token)
    if record.active:  # a repeated DELETE is no new invalidation
        await token_invalidated(ctx.core.store, app.app_id, record.token, "Unregistered", at_ms)
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/devices/register", register_device)
    app.router.add_get("/api/v1/devices/{device_id}", get_device)
    app.router.add_delete("/api/v1/devices/{device_id}", delete_device)
    app.router.add_post("/api/v1/devices/{device_id}/tokens", issue_token)
    app.router.add_post("/api/v1/tokens/apns", register_apns_token)
    app.router.add_delete("/api/v1/tokens/{token}", delete_token)
