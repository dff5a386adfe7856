"""Provider authentication tokens (ES256 JWTs) for Apple.

One token per key, shared by every connection that uses the key: Apple
counts a token *change* on a connection, so minting per connection or per
request would trip ``TooManyProviderTokenUpdates``.  The token is re-minted
after ``refresh_s`` (45 min: inside Apple's 20..60 min window, with margin
for clock skew) and never sooner than ``min_refresh_s`` after the last mint,
except once on ``ExpiredProviderToken`` when Apple says it is already stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

REFRESH_S = 45 * 60
MIN_REFRESH_S = 20 * 60


class ProviderTokenSigner:
    """Mints and caches the bearer token for one (team id, key id, .p8 key)."""

    def __init__(
        self,
        team_id: str,
        key_id: str,
        p8_pem: str | bytes,
        *,
        refresh_s: int = REFRESH_S,
        min_refresh_s: int = MIN_REFRESH_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not (min_refresh_s <= refresh_s):
            raise ValueError("refresh_s must be >= min_refresh_s")
        key = load_pem_private_key(p8_pem.encode() if isinstance(p8_pem, str) else p8_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("an APNs .p8 key must be an EC P-256 private key")
        self.team_id = team_id
        self.key_id = key_id
        self._key = key
        self._refresh_s = refresh_s
        self._min_refresh_s = min_refresh_s
        self._clock = clock
        self._token = ""
        self._iat = 0
        self.mints = 0  # for metrics and tests

    @property
    def issued_at(self) -> int:
        return self._iat

    def token(self) -> str:
        """The current token, re-minted when it is older than ``refresh_s``."""
        now = int(self._clock())
        if not self._token or now - self._iat >= self._refresh_s:
            self._mint(now)
        return self._token

    def expired(self, stale: str) -> str:
        """Apple answered ``ExpiredProviderToken`` for ``stale``.

        Re-mint only if ``stale`` is still current (many in-flight requests
        fail together; one refresh serves them all) and the current token is
        at least ``min_refresh_s`` old, so a skewed clock cannot make us
        update faster than Apple allows.  Returns the token to retry with.
        """
        now = int(self._clock())
        if stale == self._token and now - self._iat >= self._min_refresh_s:
            self._mint(now)
        return self._token

    def _mint(self, now: int) -> None:
        self._token = jwt.encode(
            {"iss": self.team_id, "iat": now},
            self._key,
            algorithm="ES256",
            headers={"kid": self.key_id},
        )
        self._iat = now
        self.mints += 1
