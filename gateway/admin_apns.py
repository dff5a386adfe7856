"""Admin API v1: the APNs credentials the bridge relays an app's pushes with.

    GET    /admin/api/v1/apns-credentials               every app's, described
    GET    /admin/api/v1/apps/{app}/apns-credentials    one app's (404 when it has none)
    PUT    /admin/api/v1/apps/{app}/apns-credentials    upload; replaces what the app had
    DELETE /admin/api/v1/apps/{app}/apns-credentials

The PUT body is ``{"kind": "token", "team_id", "key_id", "p8"}`` (the .p8
file's text) or ``{"kind": "certificate", "certificate", "password"?}`` where
``certificate`` is PEM text (certificate and key) or base64 of a PKCS#12
file.  Answers describe the credentials (``apns_credentials.describe``) and
never echo a key, a certificate body or a password.  The vault file is
shared with the worker (same ``data_dir``); the bridge re-reads it within
seconds, so an upload takes effect without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway import apns_credentials as creds
from gateway.admin_auth import AdminError, admin_json, read_json, str_field
from gateway.apns_bridge.keyvault import KeyVault


def _vault(ctx: Any) -> KeyVault:
    try:
        return creds.open_vault(ctx.cfg)
    except creds.CredentialsError as exc:
        raise AdminError(503, "NotConfigured", str(exc)) from None


def _certificate_bytes(text: str) -> bytes:
    if "-----BEGIN" in text:
        return text.encode()
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise AdminError(400, "BadRequest", "certificate must be PEM text or base64 of a PKCS#12 file") from None


def add_routes(app: web.Application, prefix: str, ctx: Callable[[web.Request], Any]) -> None:
    async def app_of(request: web.Request) -> Any:
        return await ctx(request).app_ref(request.match_info["app"], required=True)

    async def list_credentials(request: web.Request) -> web.Response:
        c = ctx(request)
        bundles = {a.app_id: a.bundle_id for a in await c.store.list_apps()}
        vault = _vault(c)
        entries = await asyncio.to_thread(creds.list_all, vault, bundles)
        return admin_json({"apns_credentials": entries})

    async def get_credentials(request: web.Request) -> web.Response:
        target = await app_of(request)
        vault = _vault(ctx(request))
        found = creds.describe(await asyncio.to_thread(vault.get, target.app_id))
        if not found:
            raise AdminError(404, "NotFound", f"app {target.bundle_id} has no APNs credentials")
        return admin_json({**found, "bundle_id": target.bundle_id})

    async def put_credentials(request: web.Request) -> web.Response:
        target = await app_of(request)
        body = await read_json(request)
        vault = _vault(ctx(request))
        kind = str_field(body, "kind")
        try:
            if kind == "token":
                team_id = str_field(body, "team_id", max_len=10)
                key_id = str_field(body, "key_id", max_len=10)
                p8 = str_field(body, "p8", max_len=creds.MAX_UPLOAD)
                made = await asyncio.to_thread(creds.add_token_key, vault, target.app_id, team_id, key_id, p8)
            elif kind == "certificate":
                data = _certificate_bytes(str_field(body, "certificate", max_len=2 * creds.MAX_UPLOAD))
                password = str_field(body, "password", required=False, max_len=500)
                made = await asyncio.to_thread(
                    creds.add_certificate, vault, target.app_id, data, password.encode() or None
                )
            else:
                raise AdminError(400, "BadRequest", "kind must be 'token' (.p8 key) or 'certificate'")
        except creds.CredentialsError as exc:
            raise AdminError(400, "BadRequest", str(exc)) from None
        return admin_json({**made, "bundle_id": target.bundle_id})

    async def delete_credentials(request: web.Request) -> web.Response:
        target = await app_of(request)
        vault = _vault(ctx(request))
        if not await asyncio.to_thread(vault.delete, target.app_id):
            raise AdminError(404, "NotFound", f"app {target.bundle_id} has no APNs credentials")
        return web.Response(status=204)

    r = app.router
    r.add_get(f"{prefix}/apns-credentials", list_credentials)
    r.add_get(f"{prefix}/apps/{{app}}/apns-credentials", get_credentials)
    r.add_put(f"{prefix}/apps/{{app}}/apns-credentials", put_credentials)
    r.add_delete(f"{prefix}/apps/{{app}}/apns-credentials", delete_credentials)
