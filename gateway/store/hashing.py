"""Secrets, identifiers and their hashes.

API keys and device secrets are 32 random bytes, so a plain sha256 is a
sufficient one-way hash (there is nothing to brute-force); comparisons of
hashes use ``hmac.compare_digest`` so timing reveals nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

API_KEY_PREFIX_LEN = 8


def _urlsafe(nbytes: int) -> str:
    # Never a leading "-": users pass keys and ids as command-line arguments
    # (`--api-key KEY`), and argparse-style parsers take "-..." for an option.
    # Redrawing 1 value in 64 costs 0.02 bits of the 256.
    while True:
        value = secrets.token_urlsafe(nbytes)
        if not value.startswith("-"):
            return value


def new_secret() -> str:
    """A url-safe random secret (32 bytes of entropy), never starting with "-"."""
    return _urlsafe(32)


def new_device_id() -> str:
    """A url-safe random device id, never starting with "-"."""
    return _urlsafe(16)


def new_token() -> str:
    """A device token as Apple issues them: 32 bytes, 64 lowercase hex."""
    return secrets.token_hex(32)


def hash_secret(plaintext: str) -> bytes:
    return hashlib.sha256(plaintext.encode()).digest()


def verify_secret(plaintext: str, stored_hash: bytes) -> bool:
    return hmac.compare_digest(hash_secret(plaintext), bytes(stored_hash))


def key_prefix(plaintext: str) -> str:
    return plaintext[:API_KEY_PREFIX_LEN]
