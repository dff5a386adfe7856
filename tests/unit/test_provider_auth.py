"""Provider-token rules as pure logic: injected clocks, an in-memory key table."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.store.base import App, ProviderKey
from provider_api.provider_auth import ConnectionAuth, ProviderAuth, VerifiedToken, parse_bearer
from schemas.errors import (
    BadTopic,
    ExpiredProviderToken,
    InvalidProviderToken,
    MissingProviderToken,
    TooManyProviderTokenUpdates,
    TopicDisallowed,
)
from tests.integration.h2_helpers import make_jwt

NOW = 1_800_000_000.0


class Keys:
    """Only the two store methods ProviderAuth reads; counts lookups."""

    def __init__(self, pub_pem: str) -> None:
        self.keys = {"KEY0000001": ProviderKey(key_id="KEY0000001", team_id="TEAM000001", public_key_pem=pub_pem)}
        self.apps = {"com.example.app": App(app_id=1, team_id="TEAM000001", bundle_id="com.example.app")}
        self.key_lookups = 0

    async def get_provider_key(self, kid: str) -> ProviderKey | None:
        self.key_lookups += 1
        return self.keys.get(kid)

    async def get_app_by_bundle(self, bundle: str) -> App | None:
        return self.apps.get(bundle)


@pytest.fixture
def setup():  # type: ignore[no-untyped-def]
    priv = ec.generate_private_key(ec.SECP256R1())
    pub = (
        priv.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    keys = Keys(pub)
    clock = {"t": NOW, "m": 100.0}
    auth = ProviderAuth(keys, max_age_s=3600, clock=lambda: clock["t"], monotonic=lambda: clock["m"])  # type: ignore[arg-type]
    return priv, keys, auth, clock


def test_parse_bearer() -> None:
    assert parse_bearer("bearer abc") == "abc"
    assert parse_bearer("Bearer  abc ") == "abc"
    for bad in (None, "", "bearer", "bearer   "):
        with pytest.raises(MissingProviderToken):
            parse_bearer(bad)
    with pytest.raises(InvalidProviderToken):
        parse_bearer("basic dXNlcg==")


async def test_verified_tokens_are_cached(setup) -> None:  # type: ignore[no-untyped-def]
    priv, keys, auth, _ = setup
    token = make_jwt(priv, iat=int(NOW))
    first = await auth.verify(token)
    assert (first.team_id, first.key_id) == ("TEAM000001", "KEY0000001")
    for _ in range(100):
        await auth.verify(token)
    assert keys.key_lookups == 1


async def test_cached_token_still_expires(setup) -> None:  # type: ignore[no-untyped-def]
    priv, _, auth, clock = setup
    token = make_jwt(priv, iat=int(NOW))
    await auth.verify(token)
    clock["t"] = NOW + 3601
    with pytest.raises(ExpiredProviderToken):
        await auth.verify(token)


async def test_revocation_noticed_after_recheck_interval(setup) -> None:  # type: ignore[no-untyped-def]
    priv, keys, auth, clock = setup
    token = make_jwt(priv, iat=int(NOW))
    await auth.verify(token)
    keys.keys["KEY0000001"] = ProviderKey(
        key_id="KEY0000001", team_id="TEAM000001", public_key_pem=keys.keys["KEY0000001"].public_key_pem, revoked=True
    )
    clock["m"] += 31
    with pytest.raises(InvalidProviderToken):
        await auth.verify(token)


async def test_future_iat_within_skew_is_fine_beyond_is_invalid(setup) -> None:  # type: ignore[no-untyped-def]
    priv, _, auth, _ = setup
    await auth.verify(make_jwt(priv, iat=int(NOW) + 30))
    with pytest.raises(InvalidProviderToken):
        await auth.verify(make_jwt(priv, iat=int(NOW) + 120))


async def test_bad_tokens_are_cached_negatively(setup) -> None:  # type: ignore[no-untyped-def]
    _, keys, auth, _ = setup
    stranger = ec.generate_private_key(ec.SECP256R1())
    token = make_jwt(stranger, iat=int(NOW))
    for _ in range(5):
        with pytest.raises(InvalidProviderToken):
            await auth.verify(token)
    assert keys.key_lookups == 1


async def test_topic_must_belong_to_team(setup) -> None:  # type: ignore[no-untyped-def]
    _, _, auth, _ = setup
    assert (await auth.app_for_topic("TEAM000001", "com.example.app.voip", "voip")).app_id == 1
    with pytest.raises(TopicDisallowed):
        await auth.app_for_topic("TEAM000002", "com.example.app", "alert")
    with pytest.raises(TopicDisallowed):
        await auth.app_for_topic("TEAM000001", "com.unknown.app", "alert")
    with pytest.raises(BadTopic):
        await auth.app_for_topic("TEAM000001", "com.example.app", "voip")


def _v(team: str = "TEAM000001") -> VerifiedToken:
    return VerifiedToken(team_id=team, key_id="KEY0000001", iat=0, checked_at=0.0)


def test_connection_token_update_rules() -> None:
    t = {"m": 0.0}
    conn = ConnectionAuth(min_refresh_s=1200, monotonic=lambda: t["m"])
    assert not conn.authenticated
    conn.admit("a", _v())
    assert conn.authenticated and conn.team_id == "TEAM000001"
    t["m"] = 600
    with pytest.raises(TooManyProviderTokenUpdates):
        conn.admit("b", _v())
    conn.admit("a", _v())  # the current token keeps working
    t["m"] = 1300
    conn.admit("b", _v())
    conn.admit("a", _v())  # the previous token too (requests in flight during rotation)
    with pytest.raises(TooManyProviderTokenUpdates):
        conn.admit("c", _v())


def test_connection_is_bound_to_one_team() -> None:
    conn = ConnectionAuth(min_refresh_s=0, monotonic=lambda: 0.0)
    conn.admit("a", _v())
    with pytest.raises(InvalidProviderToken):
        conn.admit("b", _v("TEAM000002"))
    assert conn.team_id == "TEAM000001"
