"""Operators' side of the bridge's Apple credentials (CLI and admin API).

An app relays to Apple with either a ``.p8`` token key (team id, key id) or
a TLS client certificate (PEM with its key, or PKCS#12).  Both are checked
here before they are sealed in the key vault (``apns_bridge.keyvault``): a
key that cannot sign, or a certificate that does not match its key or has
expired, is refused at upload instead of failing every relay later.

What comes back (``describe``) names the credentials -- kind, team id and key
id, or the certificate's fingerprint, subject and expiry -- and never holds
the private key, the certificate body or a password.
"""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509

from gateway.apns_bridge.keyvault import CertificateCredentials, Credentials, KeyVault, VaultError
from gateway.apns_bridge.signer import ProviderTokenSigner

_APPLE_ID = re.compile(r"^[A-Z0-9]{10}$")  # Apple's team ids and key ids
MAX_UPLOAD = 64 * 1024  # a .p8 is ~250 bytes, a .p12 a few KB


class CredentialsError(ValueError):
    """Credentials refused, with a message for the operator."""


def open_vault(cfg: Any) -> KeyVault:
    if not getattr(cfg, "secret_key", ""):
        raise CredentialsError("secret_key is not configured: APNs credentials are stored encrypted with it")
    return KeyVault.from_config(cfg)


def add_token_key(vault: KeyVault, app_id: int, team_id: str, key_id: str, p8_pem: str) -> dict[str, Any]:
    if not _APPLE_ID.match(team_id) or not _APPLE_ID.match(key_id):
        raise CredentialsError("team id and key id are 10 characters A-Z 0-9 (as Apple shows them)")
    if len(p8_pem) > MAX_UPLOAD:
        raise CredentialsError("the .p8 key is too large")
    try:
        ProviderTokenSigner(team_id, key_id, p8_pem).token()  # can it sign an ES256 JWT?
    except (ValueError, TypeError) as exc:
        raise CredentialsError(f"not a usable .p8 key (EC P-256 private key, PEM): {exc}") from None
    try:
        vault.put(app_id, team_id, key_id, p8_pem)
    except VaultError as exc:
        raise CredentialsError(str(exc)) from None
    return describe(vault.get(app_id))


def add_certificate(vault: KeyVault, app_id: int, data: bytes, password: bytes | None) -> dict[str, Any]:
    if len(data) > MAX_UPLOAD:
        raise CredentialsError("the certificate file is too large")
    try:
        creds = vault.put_certificate(app_id, data, password)
    except VaultError as exc:
        raise CredentialsError(str(exc)) from None
    return describe(creds)


def describe(creds: Credentials | None) -> dict[str, Any]:
    """What an operator may see of the credentials: never key material."""
    if creds is None:
        return {}
    if isinstance(creds, CertificateCredentials):
        cert = x509.load_pem_x509_certificate(creds.cert_pem.encode())
        return {
            "app_id": creds.app_id,
            "kind": "certificate",
            "fingerprint_sha256": creds.fingerprint,
            "subject": cert.subject.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat(),
        }
    return {"app_id": creds.app_id, "kind": "token", "team_id": creds.team_id, "key_id": creds.key_id}


def list_all(vault: KeyVault, bundle_ids: dict[int, str]) -> list[dict[str, Any]]:
    """Every app's credentials, with its bundle id (``None`` for an app deleted since)."""
    out = []
    for app_id in vault.app_ids():
        try:
            entry = describe(vault.get(app_id))
        except VaultError as exc:  # sealed under another secret_key: say so, list the rest
            entry = {"app_id": app_id, "kind": None, "error": str(exc)}
        out.append({**entry, "bundle_id": bundle_ids.get(app_id)})
    return out
