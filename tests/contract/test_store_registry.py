"""Contract: teams, apps, keys, devices, tokens and subscriptions."""

from __future__ import annotations

import re
from typing import Any

import pytest

from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from schemas.errors import StoreUnavailable
from schemas.notification import Environment, Status, TokenKind
from tests.contract.conftest import World

PROD, SANDBOX = Environment.PRODUCTION, Environment.SANDBOX


async def test_apps_and_provider_keys(store: Any) -> None:
    await store.create_team("TEAM123456", "T")
    a = await store.create_app("TEAM123456", "com.a", "A")
    b = await store.create_app("TEAM123456", "com.b")
    assert await store.get_app(a.app_id) == a
    assert await store.get_app_by_bundle("com.b") == b
    assert await store.get_app_by_bundle("com.c") is None
    assert await store.list_apps("TEAM123456") == [a, b] == await store.list_apps()
    assert await store.list_apps("OTHER") == []
    with pytest.raises(ValueError):
        await store.create_app("TEAM123456", "com.a")
    key = await store.add_provider_key("TEAM123456", "KEY1234567", "PEM")
    assert key.revoked is False and await store.get_provider_key("KEY1234567") == key
    await store.revoke_provider_key("KEY1234567")
    assert (await store.get_provider_key("KEY1234567")).revoked is True
    assert await store.get_provider_key("NOPE") is None


async def test_api_keys_are_hashed_and_verified(store: Any, backend: str) -> None:
    await store.create_team("TEAM123456", "T")
    app = await store.create_app("TEAM123456", "com.a")
    key = await store.create_api_key(app.app_id)
    assert len(key) >= 40
    assert await store.verify_api_key(key) == app
    assert await store.verify_api_key(key + "x") is None
    assert await store.verify_api_key("") is None
    listed = await store.list_api_keys(app.app_id)
    assert [k.key_prefix for k in listed] == [key[:8]]


async def test_devices_authenticate_with_their_secret(world: World) -> None:
    s, dev = world.store, world.device
    assert await s.authenticate_device(dev.device_id, world.secret) == dev
    wrong = ("y" if world.secret[0] == "x" else "x") + world.secret[1:]
    assert await s.authenticate_device(dev.device_id, wrong) is None
    assert await s.authenticate_device("nobody", world.secret) is None
    assert await s.get_device(dev.device_id) == dev and dev.user_id == "u1"


async def test_issued_tokens(world: World) -> None:
    tok = await world.store.get_token(world.token)
    assert re.fullmatch(r"[0-9a-f]{64}", world.token)
    assert tok.kind is TokenKind.LOCAL and tok.active and tok.device_id == world.device.device_id
    assert tok.topic == "com.example.app" and tok.environment is PROD and tok.user_id == "u1"
    second = await world.store.issue_token(world.device.device_id, "com.example.app.voip", SANDBOX)
    listed = await world.store.list_device_tokens(world.device.device_id)
    assert {t.token for t in listed} == {world.token, second.token}
    assert {t.token for t in await world.store.list_user_tokens(world.app.app_id, "u1")} == {world.token, second.token}
    with pytest.raises(ValueError):
        await world.store.issue_token("nobody", "com.example.app", PROD)


async def test_get_tokens_reads_many_tokens_at_once(world: World) -> None:
    s, app = world.store, world.app
    apns = "ab" * 32
    await s.register_apns_token(app.app_id, apns, "com.example.app", SANDBOX, user_id="u9")
    gone = "cd" * 32
    await s.register_apns_token(app.app_id, gone, "com.example.app", PROD)
    await s.unregister_token(gone, at_ms=1234)
    got = await s.get_tokens([world.token, apns, gone, "ef" * 32, apns])
    assert set(got) == {world.token, apns, gone}  # the unknown one is absent
    for token, record in got.items():
        assert record == await s.get_token(token)
    assert not got[gone].active and got[gone].invalidated_at_ms == 1234
    assert got[apns].kind is TokenKind.APNS and got[apns].environment is SANDBOX
    assert await s.get_tokens([]) == {}
    many = [f"{i:064x}" for i in range(1200)]  # past any per-statement parameter limit
    assert await s.get_tokens(many) == {}


async def test_unregister_and_reregister_apns_token(world: World) -> None:
    s, app = world.store, world.app
    token = "ab" * 32
    t = await s.register_apns_token(app.app_id, token.upper(), "com.example.app", PROD, user_id="u9")
    assert t.token == token and t.kind is TokenKind.APNS and t.active and t.device_id is None
    assert await s.unregister_token(token, at_ms=1000) == 1000
    assert await s.unregister_token(token, at_ms=2000) == 1000  # first invalidation time sticks
    gone = await s.get_token(token)
    assert not gone.active and gone.invalidated_at_ms == 1000
    again = await s.register_apns_token(app.app_id, token, "com.example.app", SANDBOX)
    assert again.active and again.invalidated_at_ms is None and again.environment is SANDBOX
    assert await s.unregister_token("cd" * 32) is None


async def test_delete_device_deactivates_its_tokens(world: World) -> None:
    s = world.store
    pending = await s.accept(world.note())
    tokens = await s.delete_device(world.device.device_id)
    assert [t.token for t in tokens] == [world.token] and not tokens[0].active and tokens[0].invalidated_at_ms
    assert await s.get_device(world.device.device_id) is None
    assert not (await s.get_token(world.token)).active
    assert (await s.status(world.app.app_id, pending.apns_id)).status is Status.DISCARDED
    assert await s.delete_device(world.device.device_id) == []


async def test_subscriptions_page_by_token(world: World) -> None:
    s = world.store
    toks = [(await s.issue_token(world.device.device_id, "com.example.app", PROD)).token for _ in range(5)]
    for t in toks:
        await s.subscribe(t, "news")
    await s.subscribe(toks[0], "news")  # idempotent
    await s.subscribe(world.token, "sport")
    want = sorted(toks)
    page1 = await s.channel_tokens(world.app.app_id, "news", limit=3)
    page2 = await s.channel_tokens(world.app.app_id, "news", after=page1[-1].token, limit=3)
    assert [t.token for t in page1 + page2] == want
    await s.unsubscribe(want[0], "news")
    await s.unregister_token(want[1])
    assert [t.token for t in await s.channel_tokens(world.app.app_id, "news")] == want[2:]
    assert await s.channel_tokens(world.app.app_id + 1, "news") == []


async def test_unreachable_store_raises_store_unavailable(backend: str, tmp_path: Any) -> None:
    bad: Any
    if backend == "postgres":
        bad = PostgresStore("postgresql://postgres@127.0.0.1:1/nope", connect_timeout_s=1)
    else:
        bad = SqliteStore(str(tmp_path / "missing-dir" / "x.sqlite3"))
    with pytest.raises(StoreUnavailable):
        await bad.open()
    with pytest.raises(StoreUnavailable):
        await bad.ping()
