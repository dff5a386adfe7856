"""Pure parts: provider JWTs and the encrypted key vault (no sockets)."""

from __future__ import annotations

import json

import jwt
import pytest

from gateway.apns_bridge.client import APNsResponse, parse_response
from gateway.apns_bridge.keyvault import KeyVault, VaultError
from gateway.apns_bridge.sender import backoff_s, classify
from gateway.apns_bridge.signer import ProviderTokenSigner
from tests.bridge.certs import make_p8


def test_token_is_es256_with_kid_iss_iat_and_shared_until_refresh() -> None:
    private, public = make_p8()
    now = [1_000_000.0]
    s = ProviderTokenSigner("TEAM123456", "KEY1234567", private, clock=lambda: now[0])
    t1 = s.token()
    assert jwt.get_unverified_header(t1)["alg"] == "ES256"
    assert jwt.get_unverified_header(t1)["kid"] == "KEY1234567"
    claims = jwt.decode(t1, public, algorithms=["ES256"], options={"verify_iat": False})
    assert claims == {"iss": "TEAM123456", "iat": 1_000_000}
    now[0] += 44 * 60
    assert s.token() == t1  # shared, not re-minted per call
    now[0] += 2 * 60
    assert s.token() != t1 and s.mints == 2  # refreshed after 45 min


def test_expired_refreshes_once_and_never_within_20_minutes() -> None:
    private, _ = make_p8()
    now = [1_000_000.0]
    s = ProviderTokenSigner("TEAM123456", "KEY1234567", private, clock=lambda: now[0])
    t1 = s.token()
    assert s.expired(t1) == t1  # only just minted: Apple would answer TooManyProviderTokenUpdates
    now[0] += 21 * 60
    t2 = s.expired(t1)
    assert t2 != t1
    assert s.expired(t1) == t2  # a second failure of the old token does not mint again
    assert s.mints == 2


def test_vault_round_trip_encrypted_and_bound_to_app(tmp_path) -> None:  # type: ignore[no-untyped-def]
    private, _ = make_p8()
    v = KeyVault(tmp_path / "keys.json", "secret-one")
    v.put(7, "TEAM123456", "KEY1234567", private)
    raw = (tmp_path / "keys.json").read_text()
    assert "PRIVATE KEY" not in raw and "TEAM123456" not in raw  # encrypted at rest
    assert (tmp_path / "keys.json").stat().st_mode & 0o077 == 0
    fresh = KeyVault(tmp_path / "keys.json", "secret-one")
    creds = fresh.get(7)
    assert creds is not None and creds.p8_pem == private and creds.key_id == "KEY1234567"
    assert "PRIVATE" not in repr(creds)
    assert fresh.get(8) is None
    with pytest.raises(VaultError):
        KeyVault(tmp_path / "keys.json", "wrong-secret").get(7)
    doc = json.loads(raw)
    doc["entries"]["8"] = doc["entries"]["7"]  # copied to another app id: AAD mismatch
    (tmp_path / "keys.json").write_text(json.dumps(doc))
    with pytest.raises(VaultError):
        KeyVault(tmp_path / "keys.json", "secret-one").get(8)


def test_vault_requires_a_secret(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(VaultError):
        KeyVault(tmp_path / "k.json", "")


def test_parse_and_classify() -> None:
    r = parse_response([(b":status", b"410"), (b"apns-id", b"x")], b'{"reason":"Unregistered","timestamp":12}')
    assert r == APNsResponse(status=410, apns_id="x", reason="Unregistered", timestamp_ms=12)
    assert classify(r) == "invalid_token"
    assert classify(APNsResponse(200)) == "relayed"
    assert classify(APNsResponse(403, reason="ExpiredProviderToken")) == "refresh"
    assert classify(APNsResponse(429, reason="TooManyRequests")) == "retry"
    assert classify(APNsResponse(503, reason="Shutdown")) == "retry"
    assert classify(APNsResponse(400, reason="BadDeviceToken")) == "invalid_token"
    assert classify(APNsResponse(400, reason="BadTopic")) == "rejected"
    assert classify(APNsResponse(403, reason="InvalidProviderToken")) == "rejected"


def test_backoff_grows_with_jitter_and_caps() -> None:
    import random

    rng = random.Random(1)
    d = [backoff_s(a, 1.0, 60.0, rng) for a in range(10)]
    assert 0.5 <= d[0] <= 1.0 and 4.0 <= d[3] <= 8.0
    assert all(30.0 <= x <= 60.0 for x in d[6:])
