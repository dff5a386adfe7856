"""The OpenAPI 3.1 document of the REST API, built from the code.

Request and response schemas come from the msgspec structs in
``schemas/rest.py`` that the handlers decode and encode with, so the document
cannot drift from the server; the route table below is checked against the
app's router by the tests.  ``/docs`` renders the same document as HTML
(provider_api/docs.html is the page template; no external CDN).
"""

from __future__ import annotations

import functools
import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from schemas import feedback as fb
from schemas import rest as r
from schemas import rest_schedules as rs
from schemas.quiet_hours import QuietHoursBody
from schemas.rest import BATCH_MAX

_REF = "#/components/schemas/{name}"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    summary: str
    request: type | None = None
    ok: int = 200
    response: type | None = None  # None: no body (204)
    errors: tuple[int, ...] = (400, 403, 404, 429, 503)
    params: dict[str, str] = field(default_factory=dict)  # path parameter -> description
    query: dict[str, str] = field(default_factory=dict)  # optional query parameter -> description


_SEND_ERRORS = (400, 403, 410, 413, 429, 503)
_FAN_OUT_ERRORS = (400, 403, 413, 429, 503)
_SCHEDULE = {"schedule_id": "the schedule's id (from its creation)"}

ROUTES: tuple[Route, ...] = (
    Route("post", "/api/v1/devices/register", "Register a device; returns its WebSocket credentials",
          r.RegisterDeviceRequest, 201, r.DeviceCredentials, (400, 403, 429, 503)),
    Route("get", "/api/v1/devices/{device_id}", "A device of this app with its tokens", None, 200, r.DeviceInfo,
          params={"device_id": "device id from registration"}),
    Route("delete", "/api/v1/devices/{device_id}", "Delete a device; its tokens become inactive (410 Unregistered)",
          None, 204, None, params={"device_id": "device id from registration"}),
    Route("post", "/api/v1/devices/{device_id}/tokens", "Issue a local token bound to a topic and environment",
          r.IssueTokenRequest, 201, r.TokenInfo, params={"device_id": "device id from registration"}),
    Route("get", "/api/v1/devices/{device_id}/quiet-hours", "The device's quiet hours (404 when it has none)",
          None, 200, QuietHoursBody, params={"device_id": "device id from registration"}),
    Route("put", "/api/v1/devices/{device_id}/quiet-hours",
          "Set quiet hours (local HH:MM in an IANA zone): alerts wait until they end, except time-sensitive/critical",
          QuietHoursBody, 200, QuietHoursBody, params={"device_id": "device id from registration"}),
    Route("delete", "/api/v1/devices/{device_id}/quiet-hours", "Clear the device's quiet hours", None, 204, None,
          params={"device_id": "device id from registration"}),
    Route("post", "/api/v1/tokens/apns", "Register a real iPhone token (kind apns, relayed to Apple)",
          r.ApnsTokenRequest, 201, r.TokenInfo, (400, 403, 429, 503)),
    Route("delete", "/api/v1/tokens/{token}", "Unregister a token; later pushes get 410 Unregistered",
          None, 204, None, params={"token": "device token (hex)"}),
    Route("put", "/api/v1/tokens/{token}/subscriptions/{channel}", "Subscribe a token to a channel (idempotent)",
          None, 204, None, params={"token": "device token (hex)", "channel": "1-128 of A-Z a-z 0-9 . _ : -"}),
    Route("delete", "/api/v1/tokens/{token}/subscriptions/{channel}", "Unsubscribe a token from a channel",
          None, 204, None, params={"token": "device token (hex)", "channel": "1-128 of A-Z a-z 0-9 . _ : -"}),
    Route("post", "/api/v1/send", "Send one notification to one token (REST form of POST /3/device/<token>)",
          r.SendRequest, 200, r.SendResult, _SEND_ERRORS),
    Route("post", "/api/v1/send/batch", f"Send up to {BATCH_MAX} notifications; each item has its own result",
          r.BatchSendRequest, 200, r.BatchSendResult, _FAN_OUT_ERRORS),
    Route("post", "/api/v1/send/user", "Send to every token of a user; one result per token",
          r.UserSendRequest, 200, r.UserSendResult, _FAN_OUT_ERRORS),
    Route("post", "/api/v1/send/topic", "Fan out to every active token subscribed to a channel; counts",
          r.TopicSendRequest, 200, r.TopicSendResult, _FAN_OUT_ERRORS),
    Route("get", "/api/v1/notifications/{apns_id}", "Status and timeline of a notification of this app",
          None, 200, r.NotificationView, params={"apns_id": "the notification's apns-id (UUID)"}),
    Route("post", "/api/v1/schedules", "Create a recurring schedule (every N seconds or cron) to a token or channel",
          rs.ScheduleRequest, 201, rs.ScheduleView, (400, 403, 404, 413, 429, 503)),
    Route("get", "/api/v1/schedules", "This app's recurring schedules, a page at a time in creation order",
          None, 200, rs.ScheduleList, (400, 403, 429, 503),
          query={"after": "next_after of the previous page (omit for the first page)",
                 "limit": "schedules per page, 1-1000 (default 100)"}),
    Route("get", "/api/v1/schedules/{schedule_id}", "A schedule of this app, with its next slot and counters",
          None, 200, rs.ScheduleView, params=_SCHEDULE),
    Route("post", "/api/v1/schedules/{schedule_id}/pause", "Pause a schedule (no slot fires until resumed)",
          None, 200, rs.ScheduleView, params=_SCHEDULE),
    Route("post", "/api/v1/schedules/{schedule_id}/resume",
          "Resume a schedule; slots that fell while it was paused are skipped", None, 200, rs.ScheduleView,
          params=_SCHEDULE),
    Route("delete", "/api/v1/schedules/{schedule_id}", "Delete a schedule", None, 204, None, params=_SCHEDULE),
    Route("put", "/api/v1/digest", "Opt in to digests: alert pushes to one token within window_s become one summary",
          rs.DigestRuleRequest, 200, rs.DigestRuleView),
    Route("get", "/api/v1/digest", "This app's digest rule (404 when it has none)", None, 200, rs.DigestRuleView),
    Route("delete", "/api/v1/digest", "Remove the digest rule", None, 204, None),
    Route("get", "/api/v1/feedback",
          "Tokens of this app that stopped being valid, oldest first (query: since=<ms>, after=<id> "
          "from next_after, limit=1..1000)", None, 200, fb.FeedbackPage, (400, 403, 429, 503)),
    Route("put", "/api/v1/webhook",
          "Set the app's feedback webhook (signed with HMAC-SHA256 of the secret; one is generated "
          "when omitted)", fb.WebhookRequest, 200, fb.WebhookView, (400, 403, 429, 503)),
    Route("get", "/api/v1/webhooks/deliveries",
          "The app's webhook deliveries, newest first (query: state=pending|delivered|dead, limit=1..1000)",
          None, 200, fb.WebhookDeliveries, (400, 403, 429, 503)),
)  # fmt: skip

_ERROR_TEXT = {
    400: "Invalid request; `reason` is the APNs reason string (BadDeviceToken, BadPriority, ...)",
    403: "MissingProviderToken (no API key), InvalidProviderToken (unknown key)",
    404: "NotFound (not this app's, or does not exist) or BadPath",
    410: "Unregistered: the token is inactive; `timestamp` is when it became so (ms)",
    413: "PayloadTooLarge",
    429: "TooManyRequests: app or token rate limit",
    503: "ServiceUnavailable: the store is unreachable; nothing was accepted",
}

_DESCRIPTION = """\
JSON API of pushgw.  Authenticate with the app's API key in `X-API-Key` or
`Authorization: Bearer <key>`; an app only sees its own devices, tokens and
notifications.  Errors are `{"reason": ...}` with Apple's HTTP status and
APNs reason strings, exactly as on the HTTP/2 endpoint (410 adds `timestamp`
in milliseconds).  A 2xx from a send means the notification is durably stored.
Resending an `apns_id` already accepted returns the original result
(`duplicate: true`); nothing is delivered twice.  Rate limits (429
TooManyRequests): `app_rate_per_s` send requests per app, `token_rate_per_s`
notifications per token; 0 = unlimited.
"""


def _operation(route: Route) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": route.summary, "operationId": _op_id(route)}
    parameters = [
        {"name": n, "in": "path", "required": True, "description": d, "schema": {"type": "string"}}
        for n, d in route.params.items()
    ] + [
        {"name": n, "in": "query", "required": False, "description": d, "schema": {"type": "string"}}
        for n, d in route.query.items()
    ]
    if parameters:
        op["parameters"] = parameters
    if route.request is not None:
        ref = {"$ref": _REF.format(name=route.request.__name__)}
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": ref}}}
    responses: dict[str, Any] = {}
    if route.response is None:
        responses[str(route.ok)] = {"description": "Done (no body)"}
    else:
        ref = {"$ref": _REF.format(name=route.response.__name__)}
        responses[str(route.ok)] = {"description": "Success", "content": {"application/json": {"schema": ref}}}
    for status in route.errors:
        err = {"$ref": _REF.format(name="ErrorBody")}
        responses[str(status)] = {"description": _ERROR_TEXT[status], "content": {"application/json": {"schema": err}}}
    op["responses"] = responses
    return op


def _op_id(route: Route) -> str:
    words = [w for w in route.path.removeprefix("/api/v1/").replace("{", "").replace("}", "").split("/") if w]
    return route.method + "_" + "_".join(words)


@functools.cache
def openapi_document() -> dict[str, Any]:
    types: list[type] = [t for route in ROUTES for t in (route.request, route.response) if t is not None]
    types.append(r.ErrorBody)
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route)
    return {
        "openapi": "3.1.0",
        "info": {"title": "pushgw REST API", "version": "1", "description": _DESCRIPTION},
        "servers": [{"url": "/"}],
        "security": [{"ApiKey": []}, {"Bearer": []}],
        "components": {
            "schemas": components,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
        "paths": paths,
    }


@functools.cache
def openapi_json() -> bytes:
    return msgspec.json.encode(openapi_document())


# --- the HTML page ------------------------------------------------------------


def _schema_rows(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", ()))
    rows = []
    for name, prop in schema.get("properties", {}).items():
        rows.append(
            f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(_type_name(prop))}</td>"
            f"<td>{'yes' if name in required else ''}</td></tr>"
        )
    return "<table><tr><th>field</th><th>type</th><th>required</th></tr>" + "".join(rows) + "</table>"


def _type_name(prop: dict[str, Any]) -> str:
    if "$ref" in prop:
        return str(prop["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in prop:
        return " | ".join(_type_name(p) for p in prop["anyOf"])
    if prop.get("type") == "array":
        return "array of " + _type_name(prop.get("items", {}))
    if "enum" in prop:
        return " | ".join(repr(v) for v in prop["enum"])
    return str(prop.get("type", "any"))


@functools.cache
def docs_html() -> str:
    doc = openapi_document()
    schemas = doc["components"]["schemas"]
    parts = [f"<p>{html.escape(doc['info']['description'])}</p>", '<p><a href="/openapi.json">openapi.json</a></p>']
    for route in ROUTES:
        parts.append(f'<h2><span class="m">{route.method.upper()}</span> <code>{html.escape(route.path)}</code></h2>')
        parts.append(f"<p>{html.escape(route.summary)}</p>")
        if route.request is not None:
            parts.append(f"<h3>Request: {route.request.__name__}</h3>")
            parts.append(_schema_rows(schemas[route.request.__name__]))
        if route.response is not None:
            parts.append(f"<h3>Response {route.ok}: {route.response.__name__}</h3>")
            parts.append(_schema_rows(schemas[route.response.__name__]))
        else:
            parts.append(f"<h3>Response {route.ok}: no body</h3>")
        errs = ", ".join(str(s) for s in route.errors)
        parts.append(f'<p class=e>Errors ({errs}): <code>{{"reason": ...}}</code></p>')
    template = (Path(__file__).with_name("docs.html")).read_text()
    return template.replace("{{content}}", "\n".join(parts))
