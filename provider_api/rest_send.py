"""REST send endpoints: to one token, a batch, all tokens of a user, a channel.

Every field goes through the very validator the HTTP/2 listener uses
(``schemas.apns.validate_headers``, fed the REST fields as the APNs headers
they stand for), so both wires accept and refuse exactly the same requests
with the same reason strings.  Then the request's topic must belong to the
app the API key is for (``TopicDisallowed``), the payload is checked
(``schemas.payload``), the token is resolved (``provider_api.submit``:
``BadDeviceToken``, ``DeviceTokenNotForTopic``, ``410 Unregistered``), the
per-token rate limit is applied, and only then is the notification
committed.  A 2xx is sent after the commit.

Idempotency: a single or batch send whose ``apns_id`` was already accepted
for the app gets the original notification back (``duplicate: true``) and
nothing is stored or delivered again (the store keys on (app, apns-id)),
even when the token was unregistered in between (``accepted_before`` is
asked on the token-error path only).
User and channel sends generate one fresh apns-id per token.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from aiohttp import web

from gateway.authorize import check, normalize_token, topic_matches
from gateway.store.base import App, DeviceToken
from provider_api.rest_errors import RestContext, app_of, context, json_response
from provider_api.submit import (
    TOKEN_STATE_ERRORS,
    accepted_before,
    build_notification,
    new_apns_id,
    notification_for,
)
from schemas.apns import DELIVER_AT_HEADER, DEVICE_PATH, ApnsHeaders, validate_headers
from schemas.errors import DeviceTokenNotForTopic, Gone, PushgwError, TooManyRequests, TopicDisallowed, Unregistered
from schemas.notification import AcceptResult, Notification
from schemas.payload import validate_aps_payload
from schemas.push_types import PAYLOAD_LIMIT, TOPIC_SUFFIX, base_topic, topic_for
from schemas.rest import (
    BatchSendResult,
    ItemResult,
    SendRequest,
    SendResult,
    TopicSendRequest,
    TopicSendResult,
    UserSendRequest,
    UserSendResult,
    decode,
    decode_batch,
)
from schemas.type_rules import check_body

#: Tokens read from the store and accepted per transaction in a channel fan-out.
FANOUT_PAGE = 1000
# Stands in for the token in the path when validating a fan-out's fields.
_ANY_TOKEN = "00"

_Fields = SendRequest | TopicSendRequest | UserSendRequest


def _validate(app: App, token: str, topic: str | None, f: _Fields) -> ApnsHeaders:
    """The REST fields as APNs headers, through the HTTP/2 validator; then topic ownership."""
    if topic is None:
        # Fan-out without a topic: each token's own topic is used later; check
        # the other fields against the app's topic for this push type.
        topic = topic_for(app.bundle_id, f.push_type) if f.push_type is not None else app.bundle_id
    headers: list[tuple[str, str]] = [("apns-topic", topic)]
    if isinstance(f, SendRequest) and f.apns_id is not None:
        headers.append(("apns-id", f.apns_id))
    if f.priority is not None:
        headers.append(("apns-priority", str(f.priority)))
    if f.push_type is not None:
        headers.append(("apns-push-type", f.push_type))
    if f.expiration is not None:
        headers.append(("apns-expiration", str(f.expiration)))
    if f.collapse_id is not None:
        headers.append(("apns-collapse-id", f.collapse_id))
    if f.deliver_at_ms is not None:
        headers.append((DELIVER_AT_HEADER, str(f.deliver_at_ms)))
    h = validate_headers("POST", DEVICE_PATH + token, headers)
    if base_topic(h.topic, h.push_type) != app.bundle_id:
        raise TopicDisallowed(f"topic {h.topic[:80]!r} does not belong to this app")
    return h


def _payload(raw: msgspec.Raw, push_type: str, priority: int) -> bytes:
    body = validate_aps_payload(bytes(raw), PAYLOAD_LIMIT[push_type])
    check_body(push_type, priority, body)
    return body


async def _prepare(ctx: RestContext, app: App, h: ApnsHeaders, req: SendRequest) -> Notification:
    payload = _payload(req.payload, h.push_type, h.priority)
    return await build_notification(
        ctx.core,
        app,
        token=h.token,
        topic=h.topic,
        payload=payload,
        apns_id=h.apns_id,
        priority=h.priority,
        push_type=h.push_type,
        expiration=h.expiration,
        collapse_id=h.collapse_id,
        deliver_at_ms=h.deliver_at_ms,
    )


def _ok(result: AcceptResult, index: int | None = None, token: str | None = None) -> ItemResult:
    return ItemResult(
        code=200,
        index=index,
        token=token,
        apns_id=result.apns_id,
        status=result.status.value,
        duplicate=result.duplicate,
    )


def _failed(err: PushgwError, index: int | None = None, token: str | None = None) -> ItemResult:
    timestamp = err.timestamp_ms if isinstance(err, Gone) else None
    return ItemResult(code=err.status, index=index, token=token, reason=err.reason, timestamp=timestamp)


async def _accept_allowed(ctx: RestContext, ns: Sequence[Notification]) -> list[AcceptResult | PushgwError]:
    """Apply the per-token limit, then commit the survivors in one transaction."""
    allowed = await ctx.limits.allow_tokens([n.token for n in ns])
    go = [n for n, ok in zip(ns, allowed, strict=True) if ok]
    accepted = iter(await ctx.core.engine.accept_many(go) if go else [])
    return [next(accepted) if ok else TooManyRequests("token rate limit") for ok in allowed]


# --- handlers -----------------------------------------------------------------


async def send(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    await ctx.limits.check_app(app.app_id)
    req = decode(await request.read(), SendRequest)
    h = _validate(app, req.token, req.topic, req)
    try:
        n = await _prepare(ctx, app, h, req)
    except TOKEN_STATE_ERRORS:
        original = await accepted_before(ctx.core, app, h.apns_id)
        if original is None:
            raise
        result: AcceptResult = original
    else:
        await ctx.limits.check_token(n.token)
        result = await ctx.core.engine.accept(n)
    return json_response(SendResult(apns_id=result.apns_id, status=result.status.value, duplicate=result.duplicate))


async def send_batch(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    await ctx.limits.check_app(app.app_id)
    raws = decode_batch(await request.read())
    results: list[ItemResult | None] = [None] * len(raws)
    # Pass 1: every item's fields, payload and token syntax (no I/O), in the
    # order a single send checks them.
    valid: list[tuple[int, ApnsHeaders, bytes, str]] = []
    for i, raw in enumerate(raws):
        try:
            req = decode(bytes(raw), SendRequest)
            h = _validate(app, req.token, req.topic, req)
            payload = _payload(req.payload, h.push_type, h.priority)
            valid.append((i, h, payload, normalize_token(h.token)))
        except PushgwError as err:
            results[i] = _failed(err, index=i)
    # Pass 2: each distinct token read once, with bounded concurrency (a
    # StoreUnavailable here refuses the whole batch: nothing accepted).
    records = await ctx.core.resolver.lookup_many(t for _, _, _, t in valid)
    # Pass 3: the token rules, then the notifications.
    prepared: list[Notification | None] = [None] * len(raws)
    replays: list[tuple[int, str]] = []  # token errors of items with an apns-id: maybe a retry
    for i, h, payload, token in valid:
        try:
            record = check(app, records[token], h.topic, h.push_type, None)
        except PushgwError as err:
            results[i] = _failed(err, index=i)
            if h.apns_id is not None and isinstance(err, TOKEN_STATE_ERRORS):
                replays.append((i, h.apns_id))
            continue
        prepared[i] = notification_for(
            app,
            record,
            topic=h.topic,
            payload=payload,
            apns_id=h.apns_id,
            priority=h.priority,
            push_type=h.push_type,
            expiration=h.expiration,
            collapse_id=h.collapse_id,
            deliver_at_ms=h.deliver_at_ms,
        )
    index = [i for i, n in enumerate(prepared) if n is not None]
    outcomes = await _accept_allowed(ctx, [n for n in prepared if n is not None])
    for i, outcome in zip(index, outcomes, strict=True):
        results[i] = _failed(outcome, index=i) if isinstance(outcome, PushgwError) else _ok(outcome, index=i)
    for i, apns_id in replays:
        original = await accepted_before(ctx.core, app, apns_id)
        if original is not None:
            results[i] = _ok(original, index=i)
    final = [r for r in results if r is not None]
    accepted = sum(1 for r in final if r.code == 200)
    return json_response(BatchSendResult(accepted=accepted, failed=len(final) - accepted, results=final))


def _for_token(app: App, rec: DeviceToken, h: ApnsHeaders, topic_given: bool, payload: bytes) -> Notification:
    """A fan-out notification to a token record already read from the store."""
    if not rec.active:
        raise Unregistered(timestamp_ms=rec.invalidated_at_ms or 0)
    if topic_given:
        topic = h.topic
    else:
        suffix = TOPIC_SUFFIX[h.push_type]
        topic = rec.topic if not suffix or rec.topic.endswith(suffix) else rec.topic + suffix
    if rec.app_id != app.app_id or not topic_matches(rec.topic, topic, h.push_type):
        raise DeviceTokenNotForTopic()
    return Notification(
        apns_id=new_apns_id(),
        app_id=app.app_id,
        token=rec.token,
        topic=topic,
        payload=payload,
        priority=h.priority,
        push_type=h.push_type,
        expiration=h.expiration,
        collapse_id=h.collapse_id,
        device_id=rec.device_id,
        kind=rec.kind,
        deliver_at_ms=h.deliver_at_ms,
    )


async def _fan_out(
    ctx: RestContext, app: App, records: Sequence[DeviceToken], h: ApnsHeaders, topic_given: bool, payload: bytes
) -> list[tuple[DeviceToken, AcceptResult | PushgwError]]:
    out: list[tuple[DeviceToken, AcceptResult | PushgwError]] = []
    ready: list[tuple[DeviceToken, Notification]] = []
    for rec in records:
        try:
            ready.append((rec, _for_token(app, rec, h, topic_given, payload)))
        except PushgwError as err:
            out.append((rec, err))
    outcomes = await _accept_allowed(ctx, [n for _, n in ready])
    out.extend((rec, o) for (rec, _), o in zip(ready, outcomes, strict=True))
    return out


async def send_user(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    await ctx.limits.check_app(app.app_id)
    req = decode(await request.read(), UserSendRequest)
    h = _validate(app, _ANY_TOKEN, req.topic, req)
    payload = _payload(req.payload, h.push_type, h.priority)
    records = await ctx.core.store.list_user_tokens(app.app_id, req.user_id)
    results = []
    for rec, outcome in await _fan_out(ctx, app, records, h, req.topic is not None, payload):
        if isinstance(outcome, PushgwError):
            results.append(_failed(outcome, token=rec.token))
        else:
            results.append(_ok(outcome, token=rec.token))
    accepted = sum(1 for r in results if r.code == 200)
    return json_response(
        UserSendResult(user_id=req.user_id, accepted=accepted, failed=len(results) - accepted, results=results)
    )


async def send_topic(request: web.Request) -> web.Response:
    ctx, app = context(request), app_of(request)
    await ctx.limits.check_app(app.app_id)
    req = decode(await request.read(), TopicSendRequest)
    h = _validate(app, _ANY_TOKEN, req.topic, req)
    payload = _payload(req.payload, h.push_type, h.priority)
    matched = accepted = 0
    reasons: dict[str, int] = {}
    after = ""
    while True:
        page = await ctx.core.store.channel_tokens(app.app_id, req.channel, after=after, limit=FANOUT_PAGE)
        if not page:
            break
        matched += len(page)
        for _, outcome in await _fan_out(ctx, app, page, h, req.topic is not None, payload):
            if isinstance(outcome, PushgwError):
                reasons[outcome.reason] = reasons.get(outcome.reason, 0) + 1
            else:
                accepted += 1
        if len(page) < FANOUT_PAGE:
            break
        after = page[-1].token
    result = TopicSendResult(
        channel=req.channel, matched=matched, accepted=accepted, failed=matched - accepted, reasons=reasons
    )
    return json_response(result)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/send", send)
    app.router.add_post("/api/v1/send/batch", send_batch)
    app.router.add_post("/api/v1/send/user", send_user)
    app.router.add_post("/api/v1/send/topic", send_topic)
