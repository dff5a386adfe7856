"""Apple provider keys (.p8) per app, encrypted at rest.

Decision: a file vault, not a store table.  The keys are the one secret the
bridge needs that the store does not, and a single JSON file under
``cfg.data_dir`` can be backed up, rotated and permission-restricted
(0600) on its own.  Each entry is sealed with AES-256-GCM under a key
derived from ``cfg.secret_key`` by HKDF-SHA256; the app id is bound in as
associated data so an entry copied to another app id fails to open.  Writes
go to a temp file, fsync, then ``os.replace`` (atomic on POSIX), so a crash
leaves either the old or the new file, never a torn one.

An app authenticates with either a .p8 key or a TLS client certificate
(``put_certificate``: PEM or PKCS#12, normalised to PEM and sealed the same
way); putting one replaces the other.  In a cluster every worker must see
the same vault file (shared volume) or the same file copied.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from pathlib import Path

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from gateway.apns_bridge import certauth

VAULT_FILE = "apns_keys.json"
_INFO = b"pushgw apns keyvault v1"


class VaultError(Exception):
    pass


class ProviderCredentials(msgspec.Struct, frozen=True, kw_only=True):
    app_id: int
    team_id: str
    key_id: str
    p8_pem: str

    def __repr__(self) -> str:  # never print the private key
        return f"ProviderCredentials(app_id={self.app_id}, team_id={self.team_id!r}, key_id={self.key_id!r})"


class CertificateCredentials(msgspec.Struct, frozen=True, kw_only=True):
    app_id: int
    cert_pem: str
    key_pem: str
    fingerprint: str  # sha256 of the certificate (DER), hex

    def __repr__(self) -> str:  # never print the private key
        return f"CertificateCredentials(app_id={self.app_id}, fingerprint={self.fingerprint[:16]}...)"


Credentials = ProviderCredentials | CertificateCredentials


def _derive(secret_key: str) -> AESGCM:
    if not secret_key:
        raise VaultError("secret_key is not configured: cannot encrypt provider keys at rest")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return AESGCM(hkdf.derive(secret_key.encode()))


class KeyVault:
    """``put(app_id, team_id, key_id, p8_pem)`` / ``get(app_id)`` over one encrypted file."""

    def __init__(self, path: str | os.PathLike[str], secret_key: str) -> None:
        self.path = Path(path)
        self._aead = _derive(secret_key)
        self._lock = threading.Lock()  # put() may run in executor threads
        self._cache: dict[int, Credentials] = {}
        self._mtime: float | None = None

    @classmethod
    def from_config(cls, cfg: object) -> KeyVault:
        data_dir = getattr(cfg, "data_dir", "./data")
        return cls(Path(data_dir) / VAULT_FILE, getattr(cfg, "secret_key", ""))

    def put(self, app_id: int, team_id: str, key_id: str, p8_pem: str) -> None:
        if len(team_id) != 10 or len(key_id) != 10:
            raise VaultError("team id and key id are 10 characters")
        if "PRIVATE KEY" not in p8_pem:
            raise VaultError("p8_pem is not a PEM private key")
        plain = {"team_id": team_id, "key_id": key_id, "p8": p8_pem}
        self._seal(app_id, plain, ProviderCredentials(app_id=app_id, team_id=team_id, key_id=key_id, p8_pem=p8_pem))

    def put_certificate(self, app_id: int, data: bytes, password: bytes | None = None) -> CertificateCredentials:
        """Store the app's APNs client certificate (PEM with its key, or PKCS#12)."""
        try:
            cert_pem, key_pem = certauth.normalise(data, password)
        except certauth.CertificateError as exc:
            raise VaultError(str(exc)) from exc
        creds = CertificateCredentials(
            app_id=app_id, cert_pem=cert_pem, key_pem=key_pem, fingerprint=certauth.fingerprint(cert_pem)
        )
        self._seal(app_id, {"kind": "certificate", "cert": cert_pem, "key": key_pem}, creds)
        return creds

    def _seal(self, app_id: int, plain: dict[str, str], creds: Credentials) -> None:
        with self._lock:
            entries = self._read_raw()
            nonce = os.urandom(12)
            sealed = self._aead.encrypt(nonce, json.dumps(plain).encode(), str(app_id).encode())
            entries[str(app_id)] = {
                "nonce": base64.b64encode(nonce).decode(),
                "ct": base64.b64encode(sealed).decode(),
            }
            self._write_raw(entries)
            self._cache[app_id] = creds

    def delete(self, app_id: int) -> bool:
        with self._lock:
            entries = self._read_raw()
            found = entries.pop(str(app_id), None) is not None
            if found:
                self._write_raw(entries)
            self._cache.pop(app_id, None)
            return found

    def app_ids(self) -> list[int]:
        """The apps that have credentials in the vault (nothing is decrypted)."""
        with self._lock:
            return sorted(int(app_id) for app_id in self._read_raw())

    def get(self, app_id: int) -> Credentials | None:
        with self._lock:
            self._reload_if_changed()
            if app_id in self._cache:
                return self._cache[app_id]
            entry = self._read_raw().get(str(app_id))
            if entry is None:
                return None
            try:
                plain = self._aead.decrypt(
                    base64.b64decode(entry["nonce"]), base64.b64decode(entry["ct"]), str(app_id).encode()
                )
            except (InvalidTag, KeyError, ValueError) as exc:
                raise VaultError(f"cannot decrypt the key of app {app_id} (wrong secret_key?)") from exc
            data = json.loads(plain)
            creds: Credentials
            if data.get("kind") == "certificate":
                creds = CertificateCredentials(
                    app_id=app_id,
                    cert_pem=data["cert"],
                    key_pem=data["key"],
                    fingerprint=certauth.fingerprint(data["cert"]),
                )
            else:
                creds = ProviderCredentials(
                    app_id=app_id, team_id=data["team_id"], key_id=data["key_id"], p8_pem=data["p8"]
                )
            self._cache[app_id] = creds
            return creds

    # -- file ------------------------------------------------------------------

    def _reload_if_changed(self) -> None:
        # Another process (the admin API) may have written the file.
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            self._cache.clear()
            self._mtime = mtime

    def _read_raw(self) -> dict[str, dict[str, str]]:
        try:
            raw = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise VaultError(f"cannot read key vault {self.path}: {exc}") from exc
        if raw.get("version") != 1:
            raise VaultError(f"unknown key vault version in {self.path}")
        entries: dict[str, dict[str, str]] = raw.get("entries", {})
        return entries

    def _write_raw(self, entries: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        data = json.dumps({"version": 1, "entries": entries}, indent=1).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        self._mtime = self.path.stat().st_mtime
