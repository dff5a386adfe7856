"""Admin API v1 (``/admin/api/v1``): what operators look at.

Read side here: live stats, device search and detail, notification lookup
with its timeline, shards with health, feedback.  Tenant CRUD (teams, apps,
keys, webhooks) is in ``admin_crud``, the bridge's Apple credentials in
``admin_apns``.  Authentication and the error format
are in ``admin_auth``; the dashboard (``/admin/``) is a client of this API.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway import admin_apns, admin_crud
from gateway.admin_auth import AdminError, admin_json, admin_middleware, int_param
from gateway.admin_queries import AdminQueries
from gateway.admin_shards import list_shards
from gateway.admin_stats import StatsService
from gateway.config import Config
from gateway.store.base import App

PREFIX = "/admin/api/v1"
_STATUSES = ("", "pending", "delivered", "expired", "collapsed", "dropped", "discarded", "relayed", "rejected")


class AdminContext:
    def __init__(self, cfg: Config, core: Any) -> None:
        self.cfg = cfg
        self.core = core
        self.store = core.store
        self.q = AdminQueries(core.store)
        self.stats = StatsService(core, self.q, cfg.admin_stats_window_s)

    async def app_ref(self, ref: str | None, *, required: bool = False) -> App | None:
        """An app by numeric id or bundle id; 404 when given but unknown."""
        if not ref:
            if required:
                raise AdminError(400, "BadRequest", "app is required (app id or bundle id)")
            return None
        app = await self.store.get_app(int(ref)) if ref.isdigit() else await self.store.get_app_by_bundle(ref)
        if app is None:
            raise AdminError(404, "NotFound", f"no app {ref!r}")
        return app


ADMIN_KEY = web.AppKey("pushgw_admin", AdminContext)


def ctx(request: web.Request) -> AdminContext:
    return request.app[ADMIN_KEY]


async def stats(request: web.Request) -> web.Response:
    return admin_json(await ctx(request).stats.snapshot())


async def search_devices(request: web.Request) -> web.Response:
    c = ctx(request)
    q = request.query.get("q", "").strip()[:200]
    app = await c.app_ref(request.query.get("app"))
    limit = int_param(request, "limit", 50, 1, 500)
    app_id = app.app_id if app else None
    like = _prefix_pattern(q)
    devices = await c.q.fetch("search_devices", q, like, app_id, limit)
    tokens = await c.q.fetch("search_apns_tokens", q, like, app_id, limit)
    for t in tokens:
        t["active"] = bool(t["active"])
    return admin_json({"devices": devices, "apns_tokens": tokens})


def _prefix_pattern(q: str) -> str:
    # Tokens are hex: anything else cannot match, so LIKE wildcards never get in.
    hexq = q.lower()
    if hexq and all(ch in "0123456789abcdef" for ch in hexq):
        return hexq + "%"
    return "-"  # no token is "-": matches none


async def device_detail(request: web.Request) -> web.Response:
    c = ctx(request)
    device_id = request.match_info["device_id"]
    device = await c.store.get_device(device_id)
    if device is None:
        raise AdminError(404, "NotFound", f"no device {device_id!r}")
    tokens = await c.store.list_device_tokens(device_id)
    presence: dict[str, Any]
    try:
        (entry,) = await c.core.presence.lookup([device_id])
        presence = {"connected": entry is not None, "shard": entry.shard_id if entry else None,
                    "epoch": entry.epoch if entry else None}  # fmt: skip
    except Exception as exc:  # Redis down: show the rest of the device
        presence = {"connected": None, "error": f"unavailable: {type(exc).__name__}"}
    pending = int(await c.q.value("pending_count", device_id) or 0)
    backlog = await c.store.backlog(device_id, 20)
    app = await c.store.get_app(device.app_id)
    return admin_json(
        {
            "device": device,
            "bundle_id": app.bundle_id if app else None,
            "tokens": tokens,
            "presence": presence,
            "backlog": {"pending": pending, "next": [_backlog_row(n) for n in backlog]},
        }
    )


def _backlog_row(n: Any) -> dict[str, Any]:
    return {
        "apns_id": n.apns_id,
        "priority": n.priority,
        "push_type": n.push_type,
        "topic": n.topic,
        "accepted_at_ms": n.accepted_at_ms,
        "collapse_id": n.collapse_id,
    }


async def list_notifications(request: web.Request) -> web.Response:
    c = ctx(request)
    app = await c.app_ref(request.query.get("app"))
    status = request.query.get("status", "")
    if status not in _STATUSES:
        raise AdminError(400, "BadRequest", f"status must be one of {', '.join(s for s in _STATUSES if s)}")
    device = request.query.get("device", "")[:200]
    limit = int_param(request, "limit", 50, 1, 500)
    rows = await c.q.fetch("recent_notifications", app.app_id if app else None, status, device, limit)
    return admin_json({"notifications": rows})


async def notification_detail(request: web.Request) -> web.Response:
    """Lookup by apns-id; ``app`` narrows it, otherwise every app is asked
    (one indexed lookup per app)."""
    c = ctx(request)
    apns_id = request.match_info["apns_id"].lower()
    app = await c.app_ref(request.query.get("app"))
    apps = [app] if app else await c.store.list_apps()
    found = []
    for a in apps:
        status = await c.store.status(a.app_id, apns_id)
        if status is None:
            continue
        (row,) = await c.q.fetch("notification_detail", a.app_id, apns_id)
        row["bundle_id"] = a.bundle_id
        row["payload"] = bytes(row["payload"]).decode("utf-8", "replace")
        row["timeline"] = status.timeline
        found.append(row)
    if not found:
        raise AdminError(404, "NotFound", f"no notification with apns-id {apns_id}")
    return admin_json(found[0] if len(found) == 1 else {"matches": found})


async def shards(request: web.Request) -> web.Response:
    return admin_json({"shards": await list_shards(ctx(request).core)})


async def feedback(request: web.Request) -> web.Response:
    c = ctx(request)
    app = await c.app_ref(request.query.get("app"), required=True)
    assert app is not None
    since = int_param(request, "since_ms", 0)
    after = int_param(request, "after_id", 0)
    limit = int_param(request, "limit", 100, 1, 1000)
    records = await c.store.list_feedback(app.app_id, since, after, limit)
    return admin_json({"app_id": app.app_id, "feedback": records})


def add_admin_routes(app: web.Application, cfg: Config, core: Any) -> None:
    """Mount the admin API on ``app`` (the provider process's REST app)."""
    app[ADMIN_KEY] = AdminContext(cfg, core)
    app.middlewares.append(admin_middleware(cfg.admin_token))
    r = app.router
    r.add_get(f"{PREFIX}/stats", stats)
    r.add_get(f"{PREFIX}/devices", search_devices)
    r.add_get(f"{PREFIX}/devices/{{device_id}}", device_detail)
    r.add_get(f"{PREFIX}/notifications", list_notifications)
    r.add_get(f"{PREFIX}/notifications/{{apns_id}}", notification_detail)
    r.add_get(f"{PREFIX}/shards", shards)
    r.add_get(f"{PREFIX}/feedback", feedback)
    admin_crud.add_routes(app, PREFIX, ctx)
    admin_apns.add_routes(app, PREFIX, ctx)
