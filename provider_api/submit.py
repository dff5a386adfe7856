"""The one step every provider path shares: validated request -> Notification -> accept.

Both the HTTP/2 APNs listener and the REST API call ``submit`` after they
have validated the request and found the app it is for.  It resolves the
device token (``BadDeviceToken``, ``DeviceTokenNotForTopic``,
``Unregistered`` come from the resolver), checks the token's environment,
builds the frozen ``Notification`` and returns only after the delivery
engine has committed it (DESIGN.md promise 1).  A repeated apns-id returns
the original ``AcceptResult`` with ``duplicate=True``; nothing is stored or
delivered twice.

A repeated apns-id also wins over the token's *current* state: a provider
that retries after a lost answer must get the original result even if the
token was unregistered (or deleted, or moved) in between.  The store's
duplicate check runs only at the commit, after the token was resolved, so
``replay_or_raise`` looks the apns-id up when resolution fails.  That read
is on the error path only: the hot path (a valid token) costs nothing extra.

Anything that is not a ``PushgwError`` escaping the engine is a bug or a
driver error nobody translated; the listeners answer it with 500.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

from gateway.logs import apns_id as log_apns_id
from gateway.logs import redact_token
from gateway.store.base import App, DeviceToken
from schemas.errors import BadDeviceToken, DeviceTokenNotForTopic, Unregistered
from schemas.notification import AcceptResult, Environment, Notification

log = logging.getLogger("pushgw.submit")

#: What token resolution may answer for a token whose state changed since an
#: earlier accept of the same apns-id (unregistered, deleted, moved to
#: another app or topic).
TOKEN_STATE_ERRORS = (BadDeviceToken, DeviceTokenNotForTopic, Unregistered)


class _Engine(Protocol):
    async def accept(self, notification: Notification) -> AcceptResult: ...


class _Resolver(Protocol):
    def resolve_cached(
        self, app: App, token: str, topic: str, push_type: str, environment: Environment | None = None
    ) -> DeviceToken | None: ...

    async def resolve(
        self, app: App, token: str, topic: str, push_type: str, environment: Environment | None = None
    ) -> DeviceToken: ...


class CoreLike(Protocol):
    """What ``submit`` needs from ``gateway.runtime.Core``."""

    @property
    def engine(self) -> _Engine: ...

    @property
    def resolver(self) -> _Resolver: ...

    @property
    def store(self) -> Any: ...


def new_apns_id() -> str:
    """A lowercase random (version 4) UUID, as Apple generates when the request has no apns-id.

    Formatted from 16 random bytes directly: ``str(uuid.uuid4())`` builds and
    checks a ``UUID`` object first, which was ~15% of a REST batch's CPU.
    """
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def _resolve(
    core: CoreLike, app: App, token: str, topic: str, push_type: str, environment: Environment | None
) -> DeviceToken:
    # A cached token answers without building a chain of coroutines (the common case).
    record = core.resolver.resolve_cached(app, token, topic, push_type, environment)
    if record is None:
        record = await core.resolver.resolve(app, token, topic, push_type, environment)
    return record


async def build_notification(
    core: CoreLike,
    app: App,
    *,
    token: str,
    topic: str,
    payload: bytes,
    apns_id: str | None = None,
    priority: int = 10,
    push_type: str = "alert",
    expiration: int | None = None,
    collapse_id: str | None = None,
    deliver_at_ms: int | None = None,
    environment: Environment | None = None,
) -> Notification:
    """Resolve the token and build the Notification (no commit yet).

    ``environment`` is the environment the request was addressed to; a
    token registered for the other one is ``BadDeviceToken``, as Apple
    answers a sandbox token sent to production (the resolver checks it).
    ``None`` skips the check (a REST caller that does not distinguish
    environments).
    """
    if apns_id:
        # Every log record written while this request is handled names it.
        log_apns_id.set(apns_id)
    record = await _resolve(core, app, token, topic, push_type, environment)
    return notification_for(
        app,
        record,
        topic=topic,
        payload=payload,
        apns_id=apns_id,
        priority=priority,
        push_type=push_type,
        expiration=expiration,
        collapse_id=collapse_id,
        deliver_at_ms=deliver_at_ms,
    )


def notification_for(
    app: App,
    record: DeviceToken,
    *,
    topic: str,
    payload: bytes,
    apns_id: str | None = None,
    priority: int = 10,
    push_type: str = "alert",
    expiration: int | None = None,
    collapse_id: str | None = None,
    deliver_at_ms: int | None = None,
) -> Notification:
    """The Notification to a token record already resolved (and checked)."""
    apns_id = apns_id or new_apns_id()
    log_apns_id.set(apns_id)
    log.debug("notification for token %s, topic %s", redact_token(record.token), topic)
    return Notification(
        apns_id=apns_id,
        app_id=app.app_id,
        token=record.token,
        topic=topic,
        payload=payload,
        priority=priority,
        push_type=push_type,
        expiration=expiration,
        collapse_id=collapse_id,
        device_id=record.device_id,
        kind=record.kind,
        deliver_at_ms=deliver_at_ms,
    )


async def accepted_before(core: CoreLike, app: App, apns_id: str | None) -> AcceptResult | None:
    """The original result if ``apns_id`` was already accepted for ``app``, else None.

    ``id`` is 0: the status read does not return the row id, and nobody
    reads it for a duplicate (only routing of a *new* row uses it).
    """
    if apns_id is None:
        return None
    original = await core.store.status(app.app_id, apns_id)
    if original is None:
        return None
    return AcceptResult(apns_id=original.apns_id, id=0, duplicate=True, status=original.status)


async def submit(
    core: CoreLike,
    app: App,
    *,
    token: str,
    topic: str,
    payload: bytes,
    apns_id: str | None = None,
    priority: int = 10,
    push_type: str = "alert",
    expiration: int | None = None,
    collapse_id: str | None = None,
    deliver_at_ms: int | None = None,
    environment: Environment | None = None,
) -> AcceptResult:
    """Resolve, build and durably accept one notification (see module doc)."""
    try:
        record = await _resolve(core, app, token, topic, push_type, environment)
    except TOKEN_STATE_ERRORS:
        original = await accepted_before(core, app, apns_id)
        if original is None:
            raise
        return original
    notification = notification_for(
        app,
        record,
        topic=topic,
        payload=payload,
        apns_id=apns_id,
        priority=priority,
        push_type=push_type,
        expiration=expiration,
        collapse_id=collapse_id,
        deliver_at_ms=deliver_at_ms,
    )
    return await core.engine.accept(notification)
