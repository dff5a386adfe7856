"""Admin API v1: create, read, update and delete teams, apps, keys and webhooks.

Deletes refuse (409 ``Conflict``) what would orphan data: a team that still
has apps, an app that still has devices or tokens.  Provider keys are
revoked rather than deleted (a revoked kid stays known, so a JWT naming it
gets ``InvalidProviderToken``, not a lookup of a reused id).  Secrets (API
keys, a generated .p8 private key) appear once, in the creating response.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway import admin_ops
from gateway.admin_auth import AdminError, admin_json, read_json, str_field

_TEAM_ID = re.compile(r"^[A-Z0-9]{10}$")
_BUNDLE_ID = re.compile(r"^[A-Za-z0-9.\-]{1,155}$")
_KEY_ID = re.compile(r"^[A-Z0-9]{10}$")


def add_routes(app: web.Application, prefix: str, ctx: Callable[[web.Request], Any]) -> None:
    async def app_of(request: web.Request) -> Any:
        return await ctx(request).app_ref(request.match_info["app"], required=True)

    async def team_of(request: web.Request) -> dict[str, Any]:
        rows = await ctx(request).q.fetch("get_team", request.match_info["team_id"])
        if not rows:
            raise AdminError(404, "NotFound", f"no team {request.match_info['team_id']!r}")
        return rows[0]

    # -- teams ------------------------------------------------------------------------

    async def list_teams(request: web.Request) -> web.Response:
        return admin_json({"teams": await ctx(request).q.fetch("list_teams")})

    async def create_team(request: web.Request) -> web.Response:
        body = await read_json(request)
        team_id = str_field(body, "team_id")
        if not _TEAM_ID.match(team_id):
            raise AdminError(400, "BadRequest", "team_id must be 10 characters A-Z 0-9 (Apple's team id)")
        if await ctx(request).q.fetch("get_team", team_id):
            raise AdminError(409, "Conflict", f"team {team_id} exists")
        name = str_field(body, "name", required=False)
        return admin_json(await admin_ops.create_team(ctx(request).store, team_id, name), 201)

    async def get_team(request: web.Request) -> web.Response:
        team = await team_of(request)
        c = ctx(request)
        team["apps"] = await c.store.list_apps(team["team_id"])
        team["keys"] = _keys(await c.q.fetch("list_provider_keys", team["team_id"]))
        return admin_json(team)

    async def update_team(request: web.Request) -> web.Response:
        team = await team_of(request)
        name = str_field(await read_json(request), "name")
        await ctx(request).q.execute("rename_team", team["team_id"], name)
        return admin_json({**team, "name": name})

    async def delete_team(request: web.Request) -> web.Response:
        team = await team_of(request)
        c = ctx(request)
        if int(await c.q.value("team_app_count", team["team_id"]) or 0):
            raise AdminError(409, "Conflict", "the team still has apps; delete them first")
        await c.q.execute("delete_team_keys", team["team_id"])
        await c.q.execute("delete_team", team["team_id"])
        return web.Response(status=204)

    # -- apps -------------------------------------------------------------------------

    async def list_apps(request: web.Request) -> web.Response:
        return admin_json({"apps": await ctx(request).store.list_apps(request.query.get("team") or None)})

    async def create_app(request: web.Request) -> web.Response:
        body = await read_json(request)
        team_id = str_field(body, "team_id")
        bundle_id = str_field(body, "bundle_id")
        if not _BUNDLE_ID.match(bundle_id):
            raise AdminError(400, "BadRequest", "bundle_id may hold letters, digits, '.' and '-'")
        name = str_field(body, "name", required=False)
        store = ctx(request).store
        if await store.get_app_by_bundle(bundle_id) is not None:
            raise AdminError(409, "Conflict", f"bundle id {bundle_id!r} is already registered")
        if not await ctx(request).q.fetch("get_team", team_id):
            raise AdminError(400, "BadRequest", f"unknown team {team_id!r}")
        try:
            created = await admin_ops.create_app(store, team_id, bundle_id, name)
        except ValueError as exc:  # lost a race with a concurrent create
            raise AdminError(409, "Conflict", str(exc)) from exc
        return admin_json(created, 201)

    async def get_app(request: web.Request) -> web.Response:
        app = await app_of(request)
        c = ctx(request)
        hook = await c.store.get_webhook(app.app_id)
        return admin_json(
            {
                "app_id": app.app_id,
                "team_id": app.team_id,
                "bundle_id": app.bundle_id,
                "name": app.name,
                "api_keys": await c.store.list_api_keys(app.app_id),
                "webhook": {"url": hook[0]} if hook else None,
            }
        )

    async def update_app(request: web.Request) -> web.Response:
        app = await app_of(request)
        name = str_field(await read_json(request), "name")
        await ctx(request).q.execute("rename_app", app.app_id, name)
        return admin_json({"app_id": app.app_id, "team_id": app.team_id, "bundle_id": app.bundle_id, "name": name})

    async def delete_app(request: web.Request) -> web.Response:
        app = await app_of(request)
        c = ctx(request)
        if int(await c.q.value("app_device_count", app.app_id) or 0):
            raise AdminError(409, "Conflict", "the app still has devices or tokens")
        await c.q.execute("delete_app_api_keys", app.app_id)
        await c.q.execute("delete_webhook", app.app_id)
        await c.q.execute("delete_app", app.app_id)
        return web.Response(status=204)

    # -- provider signing keys -----------------------------------------------------------

    async def list_keys(request: web.Request) -> web.Response:
        team = request.match_info.get("team_id") or request.query.get("team") or None
        return admin_json({"keys": _keys(await ctx(request).q.fetch("list_provider_keys", team))})

    async def create_key(request: web.Request) -> web.Response:
        """Generate a key pair (the .p8 is returned once) or register a given public key."""
        team = await team_of(request)
        body = await read_json(request) if request.can_read_body else {}
        key_id = str_field(body, "key_id", required=False) or None
        if key_id is not None and not _KEY_ID.match(key_id):
            raise AdminError(400, "BadRequest", "key_id must be 10 characters A-Z 0-9")
        store = ctx(request).store
        if key_id and await store.get_provider_key(key_id):
            raise AdminError(409, "Conflict", f"key {key_id} exists")
        public_pem = str_field(body, "public_key_pem", required=False, max_len=4096)
        if public_pem:
            if not public_pem.startswith("-----BEGIN PUBLIC KEY-----"):
                raise AdminError(400, "BadRequest", "public_key_pem must be a PEM public key")
            kid = key_id or admin_ops.new_key_id()
            await store.add_provider_key(team["team_id"], kid, public_pem)
            return admin_json({"team_id": team["team_id"], "key_id": kid}, 201)
        return admin_json(await admin_ops.create_provider_key(store, team["team_id"], key_id), 201)

    async def revoke_key(request: web.Request) -> web.Response:
        store = ctx(request).store
        key_id = request.match_info["key_id"]
        if await store.get_provider_key(key_id) is None:
            raise AdminError(404, "NotFound", f"no key {key_id!r}")
        await store.revoke_provider_key(key_id)
        return web.Response(status=204)

    # -- REST API keys ---------------------------------------------------------------------

    async def list_api_keys(request: web.Request) -> web.Response:
        app = await app_of(request)
        return admin_json({"api_keys": await ctx(request).store.list_api_keys(app.app_id)})

    async def create_api_key(request: web.Request) -> web.Response:
        app = await app_of(request)
        return admin_json(await admin_ops.create_api_key(ctx(request).store, app.bundle_id), 201)

    async def delete_api_key(request: web.Request) -> web.Response:
        app = await app_of(request)
        if not await ctx(request).q.execute("delete_api_key", app.app_id, request.match_info["prefix"]):
            raise AdminError(404, "NotFound", "no such API key")
        return web.Response(status=204)

    # -- webhooks -------------------------------------------------------------------------

    async def get_webhook(request: web.Request) -> web.Response:
        app = await app_of(request)
        hook = await ctx(request).store.get_webhook(app.app_id)
        if hook is None:
            raise AdminError(404, "NotFound", "the app has no webhook")
        return admin_json({"app_id": app.app_id, "url": hook[0]})

    async def put_webhook(request: web.Request) -> web.Response:
        app = await app_of(request)
        body = await read_json(request)
        url = str_field(body, "url", max_len=2000)
        if not url.startswith(("https://", "http://")):
            raise AdminError(400, "BadRequest", "url must be http(s)")
        secret = str_field(body, "secret", max_len=500)
        await ctx(request).store.set_webhook(app.app_id, url, secret)
        return admin_json({"app_id": app.app_id, "url": url})

    async def delete_webhook(request: web.Request) -> web.Response:
        app = await app_of(request)
        if not await ctx(request).q.execute("delete_webhook", app.app_id):
            raise AdminError(404, "NotFound", "the app has no webhook")
        return web.Response(status=204)

    r = app.router
    r.add_get(f"{prefix}/teams", list_teams)
    r.add_post(f"{prefix}/teams", create_team)
    r.add_get(f"{prefix}/teams/{{team_id}}", get_team)
    r.add_patch(f"{prefix}/teams/{{team_id}}", update_team)
    r.add_delete(f"{prefix}/teams/{{team_id}}", delete_team)
    r.add_get(f"{prefix}/teams/{{team_id}}/keys", list_keys)
    r.add_post(f"{prefix}/teams/{{team_id}}/keys", create_key)
    r.add_get(f"{prefix}/keys", list_keys)
    r.add_delete(f"{prefix}/keys/{{key_id}}", revoke_key)
    r.add_get(f"{prefix}/apps", list_apps)
    r.add_post(f"{prefix}/apps", create_app)
    r.add_get(f"{prefix}/apps/{{app}}", get_app)
    r.add_patch(f"{prefix}/apps/{{app}}", update_app)
    r.add_delete(f"{prefix}/apps/{{app}}", delete_app)
    r.add_get(f"{prefix}/apps/{{app}}/apikeys", list_api_keys)
    r.add_post(f"{prefix}/apps/{{app}}/apikeys", create_api_key)
    r.add_delete(f"{prefix}/apps/{{app}}/apikeys/{{prefix}}", delete_api_key)
    r.add_get(f"{prefix}/apps/{{app}}/webhook", get_webhook)
    r.add_put(f"{prefix}/apps/{{app}}/webhook", put_webhook)
    r.add_delete(f"{prefix}/apps/{{app}}/webhook", delete_webhook)


def _keys(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**r, "revoked": bool(r["revoked"])} for r in rows]
