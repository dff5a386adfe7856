"""REST recurring schedules (gateway/schedules.py fires them).

``POST /api/v1/schedules`` creates one (201), ``GET`` lists (paged:
``?after=<next_after>&limit=<n>``) or shows one,
``POST .../pause`` and ``.../resume`` switch it, ``DELETE`` removes it (204).
The push fields go through the HTTP/2 validator exactly as a send's do, and
every payload through the payload checks, so a schedule can never fire a
push that a send would have refused.  Another app's schedule answers
``404 NotFound`` like a missing one.
"""

from __future__ import annotations

import re
import time
import uuid

import msgspec
from aiohttp import web

from gateway.authorize import topic_matches
from gateway.schedules import first_slot, resume_slot, stamp_slot
from gateway.schedules_cron import Cron, CronError
from gateway.store.base import App
from gateway.store.schedules_store import FIRST_PAGE, Schedule
from provider_api.rest_devices import own_token
from provider_api.rest_errors import RestContext, app_of, context, json_response
from schemas.apns import DEVICE_PATH, validate_headers
from schemas.errors import BadRequestParams, DeviceTokenNotForTopic, NotFound, TopicDisallowed
from schemas.payload import validate_aps_payload
from schemas.push_types import PAYLOAD_LIMIT, base_topic, topic_for
from schemas.rest import decode
from schemas.rest_schedules import ScheduleList, ScheduleRequest, ScheduleView
from schemas.type_rules import check_body

_CHANNEL = re.compile(r"[A-Za-z0-9._:-]{1,128}")
#: Schedules per page of the list (as the feedback API: 100 unless asked, at most 1,000).
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def view(s: Schedule) -> ScheduleView:
    return ScheduleView(
        schedule_id=s.schedule_id,
        token=s.target if s.target_kind == "token" else None,
        channel=s.target if s.target_kind == "channel" else None,
        topic=s.topic,
        push_type=s.push_type,
        priority=s.priority,
        every_s=s.every_s,
        cron=s.cron,
        timezone=s.timezone,
        payload_count=len(msgspec.json.decode(s.payloads, type=list[msgspec.Raw])),
        paused=s.paused,
        next_slot_ms=s.next_slot_ms,
        fired=s.fired,
        skipped=s.skipped,
        last_slot_ms=s.last_slot_ms,
        last_error=s.last_error,
        created_at_ms=s.created_at_ms,
    )


def _push_fields(app: App, req: ScheduleRequest) -> tuple[str | None, str, int]:
    """(topic, push type, priority) through the HTTP/2 header validator."""
    push_type = req.push_type or "alert"
    topic = req.topic if req.topic is not None else topic_for(app.bundle_id, push_type)
    headers = [("apns-topic", topic), ("apns-push-type", push_type)]
    if req.priority is not None:
        headers.append(("apns-priority", str(req.priority)))
    if req.collapse_id is not None:
        headers.append(("apns-collapse-id", req.collapse_id))
    h = validate_headers("POST", DEVICE_PATH + "00", headers)
    if base_topic(h.topic, h.push_type) != app.bundle_id:
        raise TopicDisallowed(f"topic {h.topic[:80]!r} does not belong to this app")
    return req.topic, h.push_type, h.priority


def _payloads(req: ScheduleRequest, push_type: str, priority: int) -> bytes:
    """Every payload through the send path's checks (size, shape, the push type's own rules)."""
    if isinstance(req.payload, msgspec.Raw) == (req.payloads is not None):
        raise BadRequestParams("give exactly one of payload and payloads")
    raws = [req.payload] if isinstance(req.payload, msgspec.Raw) else list(req.payloads or [])
    checked = [validate_aps_payload(bytes(raw), PAYLOAD_LIMIT[push_type]) for raw in raws]
    now_ms = int(time.time() * 1000)
    for body in checked:
        # As a slot will send it: Live Activity timestamps are the gateway's.
        check_body(push_type, priority, stamp_slot(push_type, body, now_ms))
    return b"[" + b",".join(checked) + b"]"


def _first_slot(req: ScheduleRequest, now_ms: int) -> int:
    if (req.every_s is None) == (req.cron is None):
        raise BadRequestParams("give exactly one of every_s and cron")
    try:
        if req.cron is not None:
            Cron.parse(req.cron, req.timezone)
        return first_slot(req.every_s, req.cron, req.timezone, req.start_at_ms or now_ms)
    except CronError as exc:
        raise BadRequestParams(f"cron: {exc}") from exc


async def create_schedule(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    req = decode(await request.read(), ScheduleRequest)
    if (req.token is None) == (req.channel is None):
        raise BadRequestParams("give exactly one of token and channel")
    topic, push_type, priority = _push_fields(app, req)
    payloads = _payloads(req, push_type, priority)
    now_ms = int(time.time() * 1000)
    next_slot = _first_slot(req, now_ms)
    if req.token is not None:
        rec = await own_token(ctx, app, req.token)
        if topic is not None and not topic_matches(rec.topic, topic, push_type):
            raise DeviceTokenNotForTopic()
        kind, target = "token", rec.token
    else:
        assert req.channel is not None
        if _CHANNEL.fullmatch(req.channel) is None:
            raise BadRequestParams("channel must be 1-128 characters of A-Z a-z 0-9 . _ : -")
        kind, target = "channel", req.channel
    schedule = Schedule(
        schedule_id=str(uuid.uuid4()), app_id=app.app_id, target_kind=kind, target=target, topic=topic,
        push_type=push_type, priority=priority, ttl_s=req.ttl_s, collapse_id=req.collapse_id, payloads=payloads,
        every_s=req.every_s, cron=req.cron, timezone=req.timezone, next_slot_ms=next_slot, next_index=0,
        paused=req.paused, created_at_ms=now_ms,
    )  # fmt: skip
    created = await ctx.core.store.create_schedule(schedule)
    return json_response(view(created), status=201)


async def _own(ctx: RestContext, app: App, schedule_id: str) -> Schedule:
    s: Schedule | None = await ctx.core.store.get_schedule(app.app_id, schedule_id)
    if s is None:  # the store scopes by app: another app's schedule is not found either
        raise NotFound("no such schedule")
    return s


def _cursor(s: Schedule) -> str:
    return f"{s.created_at_ms}.{s.schedule_id}"


def _after(request: web.Request) -> tuple[int, str]:
    """``?after=`` (a ``next_after`` of an earlier page) as the store's cursor."""
    raw = request.query.get("after", "")
    if not raw:
        return FIRST_PAGE
    created, _, schedule_id = raw.partition(".")
    if not created.isascii() or not created.isdigit() or len(created) > 18 or not schedule_id:
        raise BadRequestParams("after must be a next_after value of an earlier page")
    return int(created), schedule_id


def _limit(request: web.Request) -> int:
    raw = request.query.get("limit", "")
    if not raw:
        return DEFAULT_PAGE
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequestParams(f"limit must be an integer from 1 to {MAX_PAGE}")
    return int(raw)


async def list_schedules(request: web.Request) -> web.Response:
    """``GET /api/v1/schedules?after=&limit=``: paged like the feedback API."""
    ctx, app = context(request), app_of(request)
    limit = _limit(request)
    page = await ctx.core.store.list_schedules(app.app_id, limit=limit, after=_after(request))
    next_after = _cursor(page[-1]) if len(page) == limit else None
    return json_response(ScheduleList(schedules=[view(s) for s in page], next_after=next_after))


async def get_schedule(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    return json_response(view(await _own(ctx, app, request.match_info["schedule_id"])))


async def pause_schedule(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    s = await _own(ctx, app, request.match_info["schedule_id"])
    updated = await ctx.core.store.set_schedule_paused(app.app_id, s.schedule_id, True)
    if updated is None:
        raise NotFound("no such schedule")
    return json_response(view(updated))


async def resume_schedule(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    s = await _own(ctx, app, request.match_info["schedule_id"])
    next_slot, index = resume_slot(s, int(time.time() * 1000)) if s.paused else (s.next_slot_ms, s.next_index)
    updated = await ctx.core.store.set_schedule_paused(app.app_id, s.schedule_id, False, next_slot, index)
    if updated is None:
        raise NotFound("no such schedule")
    return json_response(view(updated))


async def delete_schedule(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    if not await ctx.core.store.delete_schedule(app.app_id, request.match_info["schedule_id"]):
        raise NotFound("no such schedule")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/schedules", create_schedule)
    app.router.add_get("/api/v1/schedules", list_schedules)
    app.router.add_get("/api/v1/schedules/{schedule_id}", get_schedule)
    app.router.add_post("/api/v1/schedules/{schedule_id}/pause", pause_schedule)
    app.router.add_post("/api/v1/schedules/{schedule_id}/resume", resume_schedule)
    app.router.add_delete("/api/v1/schedules/{schedule_id}", delete_schedule)
