"""One error hierarchy for every wire of pushgw.

Each leaf class carries the HTTP status and the APNs reason string that the
provider API puts on the wire (shared/APNS.md section 4).  Code raises the
leaf; the HTTP/2 listener, the REST API and the bridge translate it with
``err.status`` / ``err.reason`` and never pattern-match on messages.
"""

from __future__ import annotations

from typing import ClassVar


class PushgwError(Exception):
    """Base of every error that maps to an APNs (status, reason) pair."""

    status: ClassVar[int] = 500
    reason: ClassVar[str] = "InternalServerError"

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.reason)
        self.detail = detail

    def body(self) -> dict[str, object]:
        """The JSON error body Apple sends: ``{"reason": ...}``."""
        return {"reason": self.reason}


# --- 400 ---------------------------------------------------------------------


class BadRequest(PushgwError):
    status = 400
    reason = "BadRequest"


class BadCollapseId(BadRequest):
    reason = "BadCollapseId"


class BadDeviceToken(BadRequest):
    reason = "BadDeviceToken"


class BadExpirationDate(BadRequest):
    reason = "BadExpirationDate"


class BadMessageId(BadRequest):
    reason = "BadMessageId"


class BadPriority(BadRequest):
    reason = "BadPriority"


class BadTopic(BadRequest):
    reason = "BadTopic"


class DeviceTokenNotForTopic(BadRequest):
    reason = "DeviceTokenNotForTopic"


class DuplicateHeaders(BadRequest):
    reason = "DuplicateHeaders"


class IdleTimeout(BadRequest):
    reason = "IdleTimeout"


class InvalidPushType(BadRequest):
    reason = "InvalidPushType"


class MissingDeviceToken(BadRequest):
    reason = "MissingDeviceToken"


class MissingTopic(BadRequest):
    reason = "MissingTopic"


class PayloadEmpty(BadRequest):
    reason = "PayloadEmpty"


class TopicDisallowed(BadRequest):
    reason = "TopicDisallowed"


class BadPayload(BadRequest):
    """Body is not a JSON object / `aps` has wrong types.

    Apple's reason for malformed JSON on /3/device is UNCONFIRMED
    (shared/APNS.md section 3); we use the broadcast API's
    ``BadRequestPayload``, the closest documented string.
    """

    reason = "BadRequestPayload"


class BadRequestParams(BadRequest):
    """A REST body field is missing or malformed (not an APNs header)."""

    reason = "BadRequestParams"


# --- 403 ---------------------------------------------------------------------


class Forbidden(PushgwError):
    status = 403
    reason = "Forbidden"


class BadCertificate(Forbidden):
    reason = "BadCertificate"


class BadCertificateEnvironment(Forbidden):
    reason = "BadCertificateEnvironment"


class ExpiredProviderToken(Forbidden):
    reason = "ExpiredProviderToken"


class InvalidProviderToken(Forbidden):
    reason = "InvalidProviderToken"


class MissingProviderToken(Forbidden):
    reason = "MissingProviderToken"


class UnrelatedKeyIdInToken(Forbidden):
    reason = "UnrelatedKeyIdInToken"


class BadEnvironmentKeyIdInToken(Forbidden):
    reason = "BadEnvironmentKeyIdInToken"


# --- 404 / 405 ---------------------------------------------------------------


class BadPath(PushgwError):
    status = 404
    reason = "BadPath"


class NotFound(PushgwError):
    """REST resource (notification, device...) that does not exist."""

    status = 404
    reason = "NotFound"


class MethodNotAllowed(PushgwError):
    status = 405
    reason = "MethodNotAllowed"


# --- 410 ---------------------------------------------------------------------


class Gone(PushgwError):
    status = 410
    reason = "Gone"

    def __init__(self, timestamp_ms: int, detail: str = "") -> None:
        super().__init__(detail)
        self.timestamp_ms = timestamp_ms

    def body(self) -> dict[str, object]:
        return {"reason": self.reason, "timestamp": self.timestamp_ms}


class ExpiredToken(Gone):
    reason = "ExpiredToken"


class Unregistered(Gone):
    reason = "Unregistered"


# --- 413 / 429 ---------------------------------------------------------------


class PayloadTooLarge(PushgwError):
    status = 413
    reason = "PayloadTooLarge"


class TooManyProviderTokenUpdates(PushgwError):
    status = 429
    reason = "TooManyProviderTokenUpdates"


class TooManyRequests(PushgwError):
    status = 429
    reason = "TooManyRequests"


# --- 5xx ---------------------------------------------------------------------


class InternalServerError(PushgwError):
    status = 500
    reason = "InternalServerError"


class ServiceUnavailable(PushgwError):
    status = 503
    reason = "ServiceUnavailable"


class Shutdown(ServiceUnavailable):
    reason = "Shutdown"


class StoreUnavailable(ServiceUnavailable):
    """The durable store cannot be reached: nothing was accepted."""


class BusUnavailable(ServiceUnavailable):
    """Redis (bus/presence) cannot be reached."""


def _leaves(cls: type[PushgwError]) -> list[type[PushgwError]]:
    out: list[type[PushgwError]] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_leaves(sub))
    return out


#: reason string -> class, for translating Apple's answers in the bridge.
BY_REASON: dict[str, type[PushgwError]] = {}
for _cls in _leaves(PushgwError):
    BY_REASON.setdefault(_cls.reason, _cls)
BY_REASON.setdefault("InternalServerError", InternalServerError)
