"""Admin API authentication, errors and JSON bodies.

Every route under ``/admin/api/`` needs ``Authorization: Bearer <admin_token>``
(or ``X-Admin-Token``).  The comparison is constant-time over SHA-256
digests, so neither the token's bytes nor its length leak through timing.
With ``admin_token`` unset the admin API is disabled: every request gets
403, never an open door.  Errors are ``{"error": <Name>, "detail": ...}``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import orjson
from aiohttp import web
from prometheus_client import Counter

from schemas.errors import BusUnavailable, StoreUnavailable

log = logging.getLogger("pushgw.admin")

ADMIN_PREFIX = "/admin/api/"
REQUESTS = Counter("pushgw_admin_requests_total", "Admin API requests by HTTP status", ["status"])

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AdminError(Exception):
    def __init__(self, status: int, error: str, detail: str = "") -> None:
        super().__init__(detail or error)
        self.status = status
        self.error = error
        self.detail = detail


def _default(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return msgspec.to_builtins(obj)


def admin_json(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body, default=_default), status=status, content_type="application/json")


def error_body(status: int, error: str, detail: str = "") -> web.Response:
    return admin_json({"error": error, "detail": detail}, status)


def token_matches(configured: str, presented: str) -> bool:
    if not configured or not presented:
        return False
    a = hashlib.sha256(configured.encode()).digest()
    b = hashlib.sha256(presented.encode()).digest()
    return hmac.compare_digest(a, b)


def presented_token(request: web.Request) -> str:
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return request.headers.get("X-Admin-Token", "")


def admin_middleware(admin_token: str) -> Any:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        resp = await _guarded(request, handler, admin_token)
        REQUESTS.labels(str(resp.status)).inc()
        return resp

    return middleware


async def _guarded(request: web.Request, handler: Handler, admin_token: str) -> web.StreamResponse:
    if not admin_token:
        return error_body(403, "AdminDisabled", "set admin_token to enable the admin API")
    if not token_matches(admin_token, presented_token(request)):
        resp = error_body(401, "Unauthorized", "missing or wrong admin token")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="pushgw-admin"'
        return resp
    try:
        answer = await handler(request)
        if request.method != "GET":  # an audit trail of every change made by an admin
            log.info("admin %s %s -> %d", request.method, request.path, answer.status)
        return answer
    except AdminError as err:
        return error_body(err.status, err.error, err.detail)
    except web.HTTPNotFound:
        return error_body(404, "NotFound", "no such admin endpoint")
    except web.HTTPMethodNotAllowed:
        return error_body(405, "MethodNotAllowed")
    except web.HTTPException as exc:
        return error_body(exc.status, exc.reason)
    except (StoreUnavailable, BusUnavailable) as exc:
        return error_body(503, "ServiceUnavailable", str(exc))
    except Exception:
        log.exception("admin API error in %s %s", request.method, request.path)
        return error_body(500, "InternalServerError")


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError as exc:
        raise AdminError(400, "BadRequest", "body is not JSON") from exc
    if not isinstance(body, dict):
        raise AdminError(400, "BadRequest", "body must be a JSON object")
    return body


def str_field(body: dict[str, Any], name: str, *, required: bool = True, max_len: int = 200) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or (required and not value) or len(value) > max_len:
        raise AdminError(400, "BadRequest", f"{name!r} must be a string of 1..{max_len} characters")
    return value


def int_param(request: web.Request, name: str, default: int, lo: int = 0, hi: int = 10**15) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise AdminError(400, "BadRequest", f"{name} must be an integer") from exc
    if not lo <= value <= hi:
        raise AdminError(400, "BadRequest", f"{name} must be within {lo}..{hi}")
    return value
