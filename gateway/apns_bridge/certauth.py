"""Certificate authentication to Apple: a TLS client certificate per app.

The alternative to .p8 provider tokens (shared/APNS.md section 2): Apple
identifies the app by the certificate presented in the TLS handshake, so
requests carry no ``authorization`` header and every certificate needs its
own connections (a pool per certificate, never shared with token pools).

Certificates arrive as PEM (certificate + unencrypted private key) or as
PKCS#12 (``.p12``, what Keychain exports, optionally with a password); both
are normalised to PEM here and kept encrypted at rest by the key vault.
Python's ``ssl`` loads a certificate chain only from a path, so the
decrypted PEM goes to an anonymous in-memory file (``memfd``) that has no
name on disk and disappears when closed.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import ssl
import tempfile
from collections.abc import Iterator
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from gateway.apns_bridge.pool import make_ssl_context


class CertificateError(ValueError):
    """The certificate or its key cannot be used for APNs."""


def normalise(data: bytes, password: bytes | None = None) -> tuple[str, str]:
    """(certificate PEM, private key PEM) from PEM or PKCS#12 input."""
    if b"-----BEGIN" in data:
        try:
            cert: x509.Certificate | None = x509.load_pem_x509_certificate(data)
            key: Any = serialization.load_pem_private_key(data, password=password)
        except ValueError as exc:
            raise CertificateError(f"PEM needs a certificate and its private key: {exc}") from exc
    else:
        try:
            key, cert, _extra = pkcs12.load_key_and_certificates(data, password)
        except ValueError as exc:
            raise CertificateError(f"not a readable PKCS#12 file (wrong password?): {exc}") from exc
    if key is None or cert is None:
        raise CertificateError("a certificate and its private key are both needed")
    if cert.public_key().public_numbers() != key.public_key().public_numbers():  # type: ignore[union-attr]
        raise CertificateError("the private key does not belong to the certificate")
    if cert.not_valid_after_utc < datetime.datetime.now(datetime.UTC):
        raise CertificateError(f"the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return cert_pem, key_pem


def fingerprint(cert_pem: str) -> str:
    """SHA-256 of the DER certificate, hex: the pool key of a certificate."""
    der = x509.load_pem_x509_certificate(cert_pem.encode()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


@contextlib.contextmanager
def _secret_file(data: bytes) -> Iterator[str]:
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("pushgw-apns-cert", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    # Elsewhere: a private temporary file, removed right after loading.
    with tempfile.NamedTemporaryFile(prefix="pushgw-cert-", suffix=".pem") as tmp:
        os.chmod(tmp.name, 0o600)
        tmp.write(data)
        tmp.flush()
        yield tmp.name


def client_context(base_ca_file: str, cert_pem: str, key_pem: str) -> ssl.SSLContext:
    """A TLS context like ``pool.make_ssl_context`` that presents the client certificate."""
    ctx = make_ssl_context(base_ca_file)
    with _secret_file((cert_pem + key_pem).encode()) as path:
        ctx.load_cert_chain(path)
    return ctx
