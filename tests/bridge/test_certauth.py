"""Certificate authentication: credentials sealed in the vault (PEM or PKCS#12), and a TLS
client certificate that a mock of Apple requiring one accepts, with no authorization header."""

from __future__ import annotations

import uuid

import pytest

from gateway.apns_bridge.certauth import client_context
from gateway.apns_bridge.client import StreamRefused
from gateway.apns_bridge.keyvault import CertificateCredentials, KeyVault, VaultError
from gateway.apns_bridge.pool import ConnectionPool, make_ssl_context
from gateway.apns_bridge.signer import ProviderTokenSigner
from tests.bridge.certs import make_client_cert, make_p8, make_self_signed
from tests.bridge.conftest import KID, TEAM
from tests.bridge.mock_apple import MockApple

BUNDLE = "com.example.certified"


def _headers(token: str, topic: str, bearer: str | None = None) -> list:  # type: ignore[type-arg]
    h = [
        (b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"127.0.0.1"),
        (b":path", b"/3/device/" + token.encode()), (b"apns-id", str(uuid.uuid4()).encode()),
        (b"apns-topic", topic.encode()), (b"apns-push-type", b"alert"),
    ]  # fmt: skip
    if bearer is not None:
        h.append((b"authorization", b"bearer " + bearer.encode()))
    return h


def test_vault_seals_pem_and_pkcs12_certificates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    _ca, pem, p12 = make_client_cert(tmp_path, BUNDLE)
    vault = KeyVault(tmp_path / "vault.json", "secret")
    from_p12 = vault.put_certificate(1, p12, b"p12-pass")
    from_pem = vault.put_certificate(2, pem)
    assert from_p12.fingerprint == from_pem.fingerprint  # the same certificate either way
    raw = (tmp_path / "vault.json").read_bytes()
    assert b"CERTIFICATE" not in raw and b"PRIVATE KEY" not in raw  # encrypted at rest
    again = KeyVault(tmp_path / "vault.json", "secret").get(1)
    assert isinstance(again, CertificateCredentials) and again.fingerprint == from_p12.fingerprint
    assert "PRIVATE KEY" not in repr(again)
    with pytest.raises(VaultError, match="wrong password"):
        vault.put_certificate(3, p12, b"not-the-password")
    _other_ca, other_pem, _ = make_client_cert(tmp_path, BUNDLE)
    cert_only = pem.split(b"-----BEGIN PRIVATE KEY")[0]
    other_key = other_pem[other_pem.index(b"-----BEGIN PRIVATE KEY") :]
    with pytest.raises(VaultError, match="does not belong"):
        vault.put_certificate(4, cert_only + other_key)
    with pytest.raises(VaultError):
        KeyVault(tmp_path / "vault.json", "another secret").get(1)


async def test_mock_requiring_a_client_certificate(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server_cert, server_key = make_self_signed(tmp_path)
    client_ca, pem, _ = make_client_cert(tmp_path, BUNDLE)
    private, public = make_p8()
    apple = MockApple(server_cert, server_key, client_ca=client_ca)
    apple.add_key(KID, TEAM, public)
    token = "ab" * 32
    apple.add_token(token, BUNDLE)
    await apple.start()
    creds = KeyVault(tmp_path / "v.json", "s").put_certificate(1, pem)
    with_cert = ConnectionPool(
        "127.0.0.1", apple.port, client_context(server_cert, creds.cert_pem, creds.key_pem), max_connections=1
    )
    without = ConnectionPool("127.0.0.1", apple.port, make_ssl_context(server_cert), max_connections=1)
    try:
        resp = await with_cert.request(_headers(token, BUNDLE), b'{"aps":{}}', 5)
        assert resp.status == 200  # no authorization header: the certificate is the credential
        resp = await with_cert.request(_headers(token, "com.example.other"), b'{"aps":{}}', 5)
        assert (resp.status, resp.reason) == (400, "TopicDisallowed")  # bound to its bundle id
        with pytest.raises(StreamRefused):  # no certificate, no connection (a token does not help)
            await without.request(_headers(token, BUNDLE, ProviderTokenSigner(TEAM, KID, private).token()), b"{}", 5)
    finally:
        await with_cert.close()
        await without.close()
        await apple.stop()
