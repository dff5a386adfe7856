"""Tenant and credential operations shared by the CLI and the admin API."""

from __future__ import annotations

import secrets
import string
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gateway.store.base import Store

_KID_ALPHABET = string.ascii_uppercase + string.digits


def new_key_id() -> str:
    """A 10-character key id, like Apple's."""
    return "".join(secrets.choice(_KID_ALPHABET) for _ in range(10))


def generate_p8() -> tuple[str, str]:
    """An EC P-256 key pair: (private key as .p8 PKCS#8 PEM, public key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private_pem, public_pem


async def create_team(store: Store, team_id: str, name: str = "") -> dict[str, Any]:
    team = await store.create_team(team_id, name or team_id)
    return {"team_id": team.team_id, "name": team.name}


async def create_app(store: Store, team_id: str, bundle_id: str, name: str = "") -> dict[str, Any]:
    app = await store.create_app(team_id, bundle_id, name)
    return {"app_id": app.app_id, "team_id": app.team_id, "bundle_id": app.bundle_id}


async def create_provider_key(store: Store, team_id: str, key_id: str | None = None) -> dict[str, Any]:
    """Register a new signing key for the team.  The private key is returned
    once and never stored: pushgw keeps only the public half."""
    kid = key_id or new_key_id()
    private_pem, public_pem = generate_p8()
    await store.add_provider_key(team_id, kid, public_pem)
    return {"team_id": team_id, "key_id": kid, "private_key_p8": private_pem}


async def create_api_key(store: Store, bundle_id: str) -> dict[str, Any]:
    app = await store.get_app_by_bundle(bundle_id)
    if app is None:
        raise SystemExit(f"no app with bundle id {bundle_id!r}")
    key = await store.create_api_key(app.app_id)
    return {"app_id": app.app_id, "bundle_id": bundle_id, "api_key": key}
