"""Shared setup for bridge/feedback integration tests: a real store + the mock Apple."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from gateway.apns_bridge.keyvault import KeyVault
from gateway.config import Config
from gateway.store import open_store
from gateway.store.base import Store
from schemas.notification import Environment, Notification, TokenKind

TEAM = "TEAM123456"
KID = "KEY1234567"
TOPIC = "com.example.relay"
SECRET = "test-secret-key-for-the-vault"


def bridge_config(tmp: Path, database_url: str, port: int = 443, ca: str = "") -> Config:
    return Config(
        data_dir=str(tmp),
        database_url=database_url,
        secret_key=SECRET,
        apns_production_host="127.0.0.1",
        apns_sandbox_host="127.0.0.1",
        apns_port=port,
        apns_ca_file=ca,
    )


async def make_store(cfg: Config) -> Store:
    return await open_store(cfg)


async def make_app(store: Store, cfg: Config, p8_private: str) -> int:
    await store.create_team(TEAM, "Team")
    app = await store.create_app(TEAM, TOPIC, "relay app")
    KeyVault.from_config(cfg).put(app.app_id, TEAM, KID, p8_private)
    return app.app_id


def tok(i: int) -> str:
    return f"{i:064x}"


async def accept_apns(store: Store, app_id: int, token: str, **kw: Any) -> str:
    if await store.get_token(token) is None:
        await store.register_apns_token(app_id, token, TOPIC, Environment.SANDBOX)
    apns_id = str(uuid.uuid4())
    await store.accept(
        Notification(
            apns_id=apns_id,
            app_id=app_id,
            token=token,
            topic=TOPIC,
            payload=b'{"aps":{"alert":"relay"}}',
            kind=TokenKind.APNS,
            **kw,
        )
    )
    return apns_id
