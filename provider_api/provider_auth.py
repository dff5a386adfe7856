"""Provider-token (ES256 JWT) authentication, as APNs does it.

Two layers:

* ``ProviderAuth`` (one per listener process) verifies a token string against
  the team's registered P-256 public key and caches the outcome keyed by the
  token string, so the hot path costs one dict lookup instead of an ES256
  verification.  Failures are cached too (bounded), so a client hammering a
  garbage token cannot make us burn CPU on signature checks.
* ``ConnectionAuth`` (one per HTTP/2 connection) applies Apple's
  per-connection rules; it is pure logic with an injectable clock.

Decisions where Apple is silent or UNCONFIRMED (shared/APNS.md section 5):

* Only ``alg: ES256`` with a ``kid`` is accepted; anything else (``none``,
  ``HS256`` signed with the public key, RS256...) is ``InvalidProviderToken``.
* ``iat`` more than ``FUTURE_SKEW_S`` (60 s) in the future is
  ``InvalidProviderToken``: a token from the future cannot be aged and would
  let a provider pre-mint tokens that stay valid for longer than an hour.
* ``iat`` older than ``cfg.provider_token_max_age_s`` is ``ExpiredProviderToken``,
  also for cached tokens (expiry is checked on every use).
* The ``kid`` must belong to the team named by ``iss``; an unknown or revoked
  key, or a key of another team, is ``InvalidProviderToken``.  Revocation is
  noticed within ``KEY_RECHECK_S`` (30 s) even for cached tokens.
* One team per connection: a valid token of a different team later on the
  same connection is answered ``InvalidProviderToken`` (Apple: "a different
  team ... errors"; it names no reason string) and the connection stays bound
  to its first team.
* A connection may switch to a new token no more often than every
  ``cfg.provider_token_min_refresh_s``; a faster switch is
  ``TooManyProviderTokenUpdates`` and the request is refused, while the
  current token keeps working.  The previous token stays acceptable, so
  requests already in flight with it when the provider rotated do not fail.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import jwt
import msgspec
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from gateway.store.base import App, Store
from schemas.errors import (
    ExpiredProviderToken,
    InvalidProviderToken,
    MissingProviderToken,
    PushgwError,
    TooManyProviderTokenUpdates,
    TopicDisallowed,
)
from schemas.push_types import base_topic

FUTURE_SKEW_S = 60
KEY_RECHECK_S = 30.0
APP_CACHE_S = 30.0
CACHE_MAX = 10_000
MAX_TOKEN_LEN = 2048  # an ES256 JWT is ~200 bytes; anything huge is garbage


class VerifiedToken(msgspec.Struct, frozen=True):
    team_id: str
    key_id: str
    iat: int
    checked_at: float  # monotonic time the key was last confirmed unrevoked


def parse_bearer(authorization: str | None) -> str:
    """The JWT out of an ``authorization: bearer <JWT>`` header value."""
    if not authorization:
        raise MissingProviderToken()
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        # "bearer" with nothing after it is Apple's MissingProviderToken case.
        if scheme.lower() == "bearer":
            raise MissingProviderToken()
        raise InvalidProviderToken("authorization is not a bearer token")
    return token


class ProviderAuth:
    """Verifies provider JWTs and authorizes topics, with caches."""

    def __init__(
        self,
        store: Store,
        *,
        max_age_s: int,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self._clock = clock
        self._mono = monotonic
        self._ok: OrderedDict[str, VerifiedToken] = OrderedDict()
        self._bad: OrderedDict[str, PushgwError] = OrderedDict()
        self._keys: dict[str, ec.EllipticCurvePublicKey] = {}
        self._apps: dict[str, tuple[float, App | None]] = {}

    def verify_cached(self, token: str) -> VerifiedToken | None:
        """The hot path: a cached, recently re-checked token is one dict hit
        (its age is still checked); None means ``verify`` must run."""
        hit = self._ok.get(token)
        if hit is None or self._mono() - hit.checked_at >= KEY_RECHECK_S:
            return None
        self._check_age(hit.iat)
        return hit

    async def verify(self, token: str) -> VerifiedToken:
        """Return the verified token or raise a 403 leaf; cached by token string."""
        hit = self._ok.get(token)
        if hit is not None and self._mono() - hit.checked_at < KEY_RECHECK_S:
            self._check_age(hit.iat)
            return hit
        bad = self._bad.get(token)
        if bad is not None:
            raise type(bad)(bad.detail)
        try:
            verified = await self._verify_uncached(token)
        except InvalidProviderToken as exc:
            _put(self._bad, token, exc)
            self._ok.pop(token, None)
            raise
        _put(self._ok, token, verified)
        self._check_age(verified.iat)
        return verified

    def _check_age(self, iat: int) -> None:
        now = self._clock()
        if iat > now + FUTURE_SKEW_S:
            raise InvalidProviderToken("iat is in the future")
        if now - iat > self.max_age_s:
            raise ExpiredProviderToken()

    async def _verify_uncached(self, token: str) -> VerifiedToken:
        if len(token) > MAX_TOKEN_LEN:
            raise InvalidProviderToken("token too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidProviderToken("malformed token") from exc
        if header.get("alg") != "ES256":
            raise InvalidProviderToken("alg must be ES256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidProviderToken("missing kid")
        record = await self.store.get_provider_key(kid)
        if record is None or record.revoked:
            self._keys.pop(kid, None)
            raise InvalidProviderToken("unknown or revoked key")
        key = self._keys.get(kid)
        if key is None:
            loaded = load_pem_public_key(record.public_key_pem.encode())
            if not isinstance(loaded, ec.EllipticCurvePublicKey) or not isinstance(loaded.curve, ec.SECP256R1):
                raise InvalidProviderToken("registered key is not P-256")
            key = self._keys[kid] = loaded
        try:
            # algorithms pins ES256: PyJWT then refuses "none" and HS256
            # (the classic "HMAC keyed with the public key" confusion).
            claims = jwt.decode(
                token,
                key,
                algorithms=["ES256"],
                options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidProviderToken("bad signature") from exc
        iss, iat = claims.get("iss"), claims.get("iat")
        if not isinstance(iss, str) or iss != record.team_id:
            raise InvalidProviderToken("iss does not own kid")
        if not isinstance(iat, int) or isinstance(iat, bool):
            raise InvalidProviderToken("iat must be an integer")
        return VerifiedToken(team_id=iss, key_id=kid, iat=iat, checked_at=self._mono())

    def app_for_topic_cached(self, team_id: str, topic: str, push_type: str) -> App | None:
        """``app_for_topic`` from the cache without a coroutine; None: not cached."""
        cached = self._apps.get(base_topic(topic, push_type))
        if cached is None or self._mono() - cached[0] > APP_CACHE_S:
            return None
        app = cached[1]
        if app is None or app.team_id != team_id:
            raise TopicDisallowed(f"topic {topic[:80]} is not an app of team {team_id}")
        return app

    async def app_for_topic(self, team_id: str, topic: str, push_type: str) -> App:
        """The app a topic addresses, if the team owns it; else ``TopicDisallowed``."""
        bundle = base_topic(topic, push_type)
        now = self._mono()
        cached = self._apps.get(bundle)
        if cached is None or now - cached[0] > APP_CACHE_S:
            app = await self.store.get_app_by_bundle(bundle)
            if len(self._apps) >= CACHE_MAX:
                self._apps.clear()
            self._apps[bundle] = (now, app)
        else:
            app = cached[1]
        if app is None or app.team_id != team_id:
            raise TopicDisallowed(f"topic {topic[:80]} is not an app of team {team_id}")
        return app


def _put(cache: OrderedDict, key: str, value: object) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > CACHE_MAX:
        cache.popitem(last=False)


class ConnectionAuth:
    """Apple's per-connection token rules (pure logic)."""

    def __init__(self, *, min_refresh_s: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.min_refresh_s = min_refresh_s
        self._mono = monotonic
        self.team_id: str | None = None
        self.current: str | None = None
        self.previous: str | None = None
        self.changed_at = 0.0

    @property
    def authenticated(self) -> bool:
        return self.team_id is not None

    def admit(self, token: str, verified: VerifiedToken) -> None:
        """Bind or check the connection's team and token; raise on a rule break."""
        if self.team_id is not None and verified.team_id != self.team_id:
            raise InvalidProviderToken("one team per connection")
        if token == self.current or token == self.previous:
            return
        now = self._mono()
        if self.current is not None and now - self.changed_at < self.min_refresh_s:
            raise TooManyProviderTokenUpdates()
        self.team_id = verified.team_id
        self.previous, self.current = self.current, token
        self.changed_at = now
