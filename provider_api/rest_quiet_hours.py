"""REST: a device's quiet hours (the device can set them itself over the
WebSocket with a v2 ``quiet`` frame; both write the same stored setting).

    GET    /api/v1/devices/{device_id}/quiet-hours   200 {"start","end","tz"} or 404 NotFound
    PUT    /api/v1/devices/{device_id}/quiet-hours   {"start": "22:00", "end": "07:00", "tz": "Europe/Berlin"}
    DELETE /api/v1/devices/{device_id}/quiet-hours   204

A change reaches a connected device's shard at once (a ``settings`` bus
message makes it reload them); otherwise it applies from the next connect.
"""

from __future__ import annotations

import logging

from aiohttp import web

from gateway.bus import messages
from provider_api.rest_devices import own_device
from provider_api.rest_errors import RestContext, app_of, context, json_response
from schemas.errors import NotFound
from schemas.quiet_hours import QuietHours, QuietHoursBody
from schemas.rest import decode

log = logging.getLogger(__name__)
PATH = "/api/v1/devices/{device_id}/quiet-hours"


def _body(quiet: QuietHours) -> QuietHoursBody:
    start, end = quiet.clock()
    return QuietHoursBody(start=start, end=end, tz=quiet.tz)


async def get_quiet_hours(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    device = await own_device(ctx, app, request.match_info["device_id"])
    quiet = await ctx.core.store.get_quiet_hours(device.device_id)
    if quiet is None:
        raise NotFound("the device has no quiet hours")
    return json_response(_body(quiet))


async def put_quiet_hours(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    device = await own_device(ctx, app, request.match_info["device_id"])
    req = decode(await request.read(), QuietHoursBody)
    quiet = QuietHours.parse(req.start, req.end, req.tz)
    await ctx.core.store.set_quiet_hours(device.device_id, quiet)
    await _tell_shard(ctx, device.device_id)
    return json_response(_body(quiet))


async def delete_quiet_hours(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    device = await own_device(ctx, app, request.match_info["device_id"])
    await ctx.core.store.set_quiet_hours(device.device_id, None)
    await _tell_shard(ctx, device.device_id)
    return web.Response(status=204)


async def _tell_shard(ctx: RestContext, device_id: str) -> None:
    """Best effort: the setting is stored; a lost message only delays it to the next connect."""
    try:
        [entry] = await ctx.core.presence.lookup([device_id])
        if entry is not None:
            ctx.core.bus.publish(entry.shard_id, messages.encode(messages.SettingsMessage(device_id)))
    except Exception as exc:
        log.warning("could not tell the shard of %s about new quiet hours: %s", device_id, exc)


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, get_quiet_hours)
    app.router.add_put(PATH, put_quiet_hours)
    app.router.add_delete(PATH, delete_quiet_hours)
