"""REST plumbing shared by every resource: context, API-key auth, errors, JSON.

Errors use the APNs vocabulary on this wire too: ``{"reason": ...}`` with
Apple's status, ``"timestamp"`` on 410.  The API key maps onto Apple's
provider-token reasons: no key is ``403 MissingProviderToken``, an unknown
or revoked key ``403 InvalidProviderToken``.  Unknown routes are
``404 BadPath``, wrong methods ``405 MethodNotAllowed``, an oversized body
``413 PayloadTooLarge``; a store outage is ``503 ServiceUnavailable`` and
nothing was accepted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from gateway.config import Config
from gateway.store.base import App
from provider_api.ratelimit import RateLimits
from schemas.errors import (
    BadPath,
    BadRequest,
    InternalServerError,
    InvalidProviderToken,
    MethodNotAllowed,
    MissingProviderToken,
    PayloadTooLarge,
    PushgwError,
)

log = logging.getLogger("pushgw.rest")

API_PREFIX = "/api/v1/"
#: Largest request body: a full batch of 500 VoIP-sized payloads plus fields.
MAX_BODY = 4 * 1024 * 1024
#: A verified API key is trusted this long without asking the store again; a
#: revoked key stops working within this time.
AUTH_CACHE_TTL_S = 5.0
AUTH_CACHE_MAX = 10_000

_encoder = msgspec.json.Encoder()
_JSON = "application/json"


@dataclass
class RestContext:
    """What the handlers of one REST app share (stored on the aiohttp app)."""

    cfg: Config
    core: Any  # gateway.runtime.Core (typed loosely: provider_api only needs its attributes)
    limits: RateLimits
    _auth: OrderedDict[bytes, tuple[App, float]] = field(default_factory=OrderedDict)

    async def authenticate(self, request: web.Request) -> App:
        key = request.headers.get("X-API-Key")
        if key is None:
            auth = request.headers.get("Authorization", "")
            scheme, _, rest = auth.partition(" ")
            key = rest.strip() if scheme.lower() == "bearer" else ""
        if not key:
            raise MissingProviderToken("send the API key in X-API-Key or Authorization: Bearer")
        # Cache by digest, never by the key itself, so a memory dump does not
        # hold usable keys; the store's own check stays constant-time.
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()
        now = time.monotonic()
        hit = self._auth.get(digest)
        if hit is not None and hit[1] > now:
            return hit[0]
        app = await self.core.store.verify_api_key(key)
        if app is None:
            self._auth.pop(digest, None)
            raise InvalidProviderToken("unknown or revoked API key")
        self._auth[digest] = (app, now + AUTH_CACHE_TTL_S)
        self._auth.move_to_end(digest)
        if len(self._auth) > AUTH_CACHE_MAX:
            self._auth.popitem(last=False)
        return app


CONTEXT: web.AppKey[RestContext] = web.AppKey("pushgw_rest", RestContext)
#: The authenticated app of a request; feedback routes mounted on this app read it too.
APP: web.RequestKey[App] = web.RequestKey("pushgw_app", App)


def context(request: web.Request) -> RestContext:
    return request.app[CONTEXT]


def app_of(request: web.Request) -> App:
    """The authenticated app (set by the middleware for every /api/ route)."""
    return request[APP]


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_encoder.encode(body), status=status, content_type=_JSON)


def error_response(err: PushgwError) -> web.Response:
    return web.Response(body=_encoder.encode(err.body()), status=err.status, content_type=_JSON)


async def read_body(request: web.Request) -> bytes:
    return await request.read()


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def rest_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate /api/ requests and turn every failure into an APNs-style body."""
    try:
        if request.path.startswith(API_PREFIX):
            request[APP] = await context(request).authenticate(request)
        return await handler(request)
    except PushgwError as err:
        if err.status >= 500:
            log.warning("%s %s -> %d %s: %s", request.method, request.path, err.status, err.reason, err.detail)
        return error_response(err)
    except web.HTTPException as exc:
        return error_response(_from_http(exc))
    except ConnectionResetError:
        # The client went away while sending its body: nothing was accepted and
        # nobody reads the answer; not a server error worth a stack trace.
        log.debug("%s %s: client closed the connection mid-request", request.method, request.path)
        return error_response(BadRequest("connection lost"))
    except Exception:
        log.exception("unhandled error in %s %s", request.method, request.path)
        return error_response(InternalServerError())


def _from_http(exc: web.HTTPException) -> PushgwError:
    if exc.status == 404:
        return BadPath("no such endpoint")
    if exc.status == 405:
        return MethodNotAllowed()
    if exc.status == 413:
        return PayloadTooLarge(f"request body over {MAX_BODY} bytes")
    return BadRequest(exc.reason) if exc.status < 500 else InternalServerError(exc.reason)
