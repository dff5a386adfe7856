"""TokenResolver: the exact APNs errors, and its small cache (pure logic, fake store)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from gateway.authorize import TokenResolver, normalize_token, topic_matches
from gateway.store.base import App, DeviceToken, Store
from schemas.errors import BadDeviceToken, DeviceTokenNotForTopic, StoreUnavailable, Unregistered
from schemas.notification import Environment, TokenKind

APP = App(app_id=1, team_id="TEAM123456", bundle_id="com.example.app")
OTHER_APP = App(app_id=2, team_id="TEAM123456", bundle_id="com.example.other")
TOKEN = "ab" * 32


def record(token: str = TOKEN, **kw: object) -> DeviceToken:
    fields: dict[str, object] = {
        "token": token,
        "app_id": 1,
        "device_id": "dev-1",
        "topic": "com.example.app",
        "environment": Environment.PRODUCTION,
        "kind": TokenKind.LOCAL,
        "active": True,
        "invalidated_at_ms": None,
    }
    fields.update(kw)
    return DeviceToken(**fields)  # type: ignore[arg-type]


class FakeStore:
    """Counts token reads (one per token asked for) and queries (one per call)."""

    def __init__(self, *records: DeviceToken) -> None:
        self.tokens = {r.token: r for r in records}
        self.reads = 0
        self.queries: list[list[str]] = []

    async def get_tokens(self, tokens: list[str]) -> dict[str, DeviceToken]:
        self.reads += len(tokens)
        self.queries.append(sorted(tokens))
        return {t: self.tokens[t] for t in tokens if t in self.tokens}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def resolver(store: FakeStore, clock: Clock | None = None, ttl: float = 5.0) -> TokenResolver:
    return TokenResolver(cast(Store, store), ttl, clock=clock or Clock())


async def test_active_token_of_the_app_resolves() -> None:
    r = resolver(FakeStore(record()))
    got = await r.resolve(APP, TOKEN, "com.example.app", "alert")
    assert got.device_id == "dev-1"


@pytest.mark.parametrize("bad", ["", "abc", "zz" * 32, "ab" * 300, "ab cd"])
async def test_malformed_token_is_bad_device_token_without_a_store_read(bad: str) -> None:
    store = FakeStore(record())
    with pytest.raises(BadDeviceToken):
        await resolver(store).resolve(APP, bad, "com.example.app", "alert")
    assert store.reads == 0


async def test_unknown_token_is_bad_device_token() -> None:
    with pytest.raises(BadDeviceToken) as exc:
        await resolver(FakeStore()).resolve(APP, TOKEN, "com.example.app", "alert")
    assert (exc.value.status, exc.value.reason) == (400, "BadDeviceToken")


async def test_uppercase_token_is_looked_up_lowercase() -> None:
    got = await resolver(FakeStore(record())).resolve(APP, TOKEN.upper(), "com.example.app", "alert")
    assert got.token == TOKEN


async def test_token_of_another_app_is_not_for_topic() -> None:
    with pytest.raises(DeviceTokenNotForTopic) as exc:
        await resolver(FakeStore(record())).resolve(OTHER_APP, TOKEN, "com.example.app", "alert")
    assert (exc.value.status, exc.value.reason) == (400, "DeviceTokenNotForTopic")


@pytest.mark.parametrize(
    ("topic", "push_type", "ok"),
    [
        ("com.example.app", "alert", True),
        ("com.example.app", "background", True),
        ("com.example.app.voip", "voip", True),
        ("com.example.app.push-type.liveactivity", "liveactivity", True),
        ("com.example.app.complication", "complication", True),
        ("com.example.app.pushkit.fileprovider", "fileprovider", True),
        ("com.example.app.location-query", "location", True),
        ("com.example.app.voip-ptt", "pushtotalk", True),
        ("com.example.app.push-type.widgets", "widgets", True),
        ("com.example.app.push-type.controls", "controls", True),
        ("com.example.app.voip", "alert", False),  # suffix of another push type
        ("com.example.app.voip", "liveactivity", False),
        ("com.example.other", "alert", False),
        ("com.example", "alert", False),
    ],
)
async def test_topic_must_be_the_tokens_topic_plus_the_push_type_suffix(topic: str, push_type: str, ok: bool) -> None:
    r = resolver(FakeStore(record()))
    assert topic_matches("com.example.app", topic, push_type) is ok
    if ok:
        await r.resolve(APP, TOKEN, topic, push_type)
    else:
        with pytest.raises(DeviceTokenNotForTopic):
            await r.resolve(APP, TOKEN, topic, push_type)


async def test_inactive_token_is_unregistered_with_the_invalidation_time() -> None:
    r = resolver(FakeStore(record(active=False, invalidated_at_ms=1_700_000_000_123)))
    with pytest.raises(Unregistered) as exc:
        await r.resolve(APP, TOKEN, "com.example.app", "alert")
    assert exc.value.status == 410
    assert exc.value.body() == {"reason": "Unregistered", "timestamp": 1_700_000_000_123}


async def test_inactive_token_with_wrong_topic_reports_the_topic_first() -> None:
    r = resolver(FakeStore(record(active=False, invalidated_at_ms=5)))
    with pytest.raises(DeviceTokenNotForTopic):
        await r.resolve(APP, TOKEN, "com.example.other", "alert")


async def test_token_of_the_other_environment_is_bad_device_token() -> None:
    r = resolver(FakeStore(record(environment=Environment.SANDBOX)))
    with pytest.raises(BadDeviceToken):
        await r.resolve(APP, TOKEN, "com.example.app", "alert", Environment.PRODUCTION)
    got = await r.resolve(APP, TOKEN, "com.example.app", "alert", Environment.SANDBOX)
    assert got.environment is Environment.SANDBOX


async def test_records_are_cached_for_the_ttl_then_reread() -> None:
    store, clock = FakeStore(record()), Clock()
    r = resolver(store, clock)
    for _ in range(3):
        await r.resolve(APP, TOKEN, "com.example.app", "alert")
    assert store.reads == 1
    clock.now += 5.1
    await r.resolve(APP, TOKEN, "com.example.app", "alert")
    assert store.reads == 2


async def test_invalidate_forces_a_reread() -> None:
    store = FakeStore(record())
    r = resolver(store)
    await r.resolve(APP, TOKEN, "com.example.app", "alert")
    store.tokens[TOKEN] = record(active=False, invalidated_at_ms=42)
    await r.resolve(APP, TOKEN, "com.example.app", "alert")  # still cached: active
    r.invalidate(TOKEN.upper())
    with pytest.raises(Unregistered):
        await r.resolve(APP, TOKEN, "com.example.app", "alert")


async def test_unknown_tokens_are_not_cached() -> None:
    # A token issued a moment after a failed push must work at once.
    store = FakeStore()
    r = resolver(store)
    with pytest.raises(BadDeviceToken):
        await r.resolve(APP, TOKEN, "com.example.app", "alert")
    store.tokens[TOKEN] = record()
    assert (await r.resolve(APP, TOKEN, "com.example.app", "alert")).token == TOKEN


async def test_cache_is_bounded() -> None:
    tokens = [f"{i:064x}" for i in range(10)]
    store = FakeStore(*(record(t) for t in tokens))
    r = TokenResolver(cast(Store, store), 60.0, max_entries=3, clock=Clock())
    for t in tokens:
        await r.resolve(APP, t, "com.example.app", "alert")
    reads = store.reads
    await r.resolve(APP, tokens[-1], "com.example.app", "alert")  # recent: cached
    assert store.reads == reads
    await r.resolve(APP, tokens[0], "com.example.app", "alert")  # evicted: reread
    assert store.reads == reads + 1


def test_normalize_token() -> None:
    assert normalize_token("ABCD") == "abcd"
    with pytest.raises(BadDeviceToken):
        normalize_token("abc")


class SlowStore(FakeStore):
    """get_tokens waits until released, so reads can be seen in flight."""

    def __init__(self, *records: DeviceToken) -> None:
        super().__init__(*records)
        self.release = asyncio.Event()

    async def get_tokens(self, tokens: list[str]) -> dict[str, DeviceToken]:
        got = await super().get_tokens(tokens)
        await self.release.wait()
        return got


async def test_lookup_many_reads_each_distinct_token_once_and_shares_reads() -> None:
    other = "cd" * 32
    store = SlowStore(record(), record(other, device_id="dev-2"))
    r = resolver(store)
    first = asyncio.ensure_future(r.lookup_many([TOKEN, other, TOKEN, "ef" * 32]))
    second = asyncio.ensure_future(r.lookup_many([other]))
    await asyncio.sleep(0)
    store.release.set()
    got, got2 = await first, await second
    assert store.reads == 3  # TOKEN, other, the unknown one; the second caller shared "other"
    assert len(store.queries) == 1  # and all in one query
    assert {t: (rec.device_id if rec else None) for t, rec in got.items()} == {
        TOKEN: "dev-1",
        other: "dev-2",
        "ef" * 32: None,
    }
    assert got2[other] is not None and got2[other].device_id == "dev-2"


async def test_cancelled_lookup_many_does_not_cancel_a_shared_read() -> None:
    store = SlowStore(record())
    r = resolver(store)
    cancelled = asyncio.ensure_future(r.lookup_many([TOKEN]))
    survivor = asyncio.ensure_future(r.resolve(APP, TOKEN, "com.example.app", "alert"))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    store.release.set()
    assert (await survivor).device_id == "dev-1"
    assert cancelled.cancelled() and store.reads == 1


async def test_misses_of_concurrent_requests_share_one_query() -> None:
    tokens = [f"{i:064x}" for i in range(1, 21)]
    store = FakeStore(*(record(t, device_id=f"dev-{t[-2:]}") for t in tokens[:-1]))
    r = resolver(store)
    got = await asyncio.gather(
        *(r.resolve(APP, t, "com.example.app", "alert") for t in tokens[:-1]),
        r.resolve(APP, tokens[-1], "com.example.app", "alert"),
        return_exceptions=True,
    )
    assert store.queries == [sorted(tokens)]
    assert [g.device_id for g in got[:-1]] == [f"dev-{t[-2:]}" for t in tokens[:-1]]  # type: ignore[union-attr]
    assert isinstance(got[-1], BadDeviceToken)  # the unknown one, answered from the same query


async def test_a_large_burst_of_misses_is_read_in_bounded_batches() -> None:
    tokens = [f"{i:064x}" for i in range(1, 1201)]
    store = FakeStore(*(record(t) for t in tokens))
    r = TokenResolver(cast(Store, store), 5.0, max_batch=500, clock=Clock())
    got = await r.lookup_many(tokens)
    assert all(got[t] is not None for t in tokens)
    assert sorted(len(q) for q in store.queries) == [200, 500, 500]
    assert store.reads == 1200


class FailingStore(FakeStore):
    async def get_tokens(self, tokens: list[str]) -> dict[str, DeviceToken]:
        await super().get_tokens(tokens)
        raise StoreUnavailable("down")


async def test_a_failed_query_fails_every_request_waiting_on_it_and_is_not_cached() -> None:
    store = FailingStore(record(), record("cd" * 32))
    r = resolver(store)
    got = await asyncio.gather(
        r.resolve(APP, TOKEN, "com.example.app", "alert"),
        r.resolve(APP, "cd" * 32, "com.example.app", "alert"),
        return_exceptions=True,
    )
    assert all(isinstance(g, StoreUnavailable) for g in got) and len(store.queries) == 1
    ok = FakeStore(record())
    r._store = cast(Store, ok)
    assert (await r.resolve(APP, TOKEN, "com.example.app", "alert")).token == TOKEN
    assert ok.reads == 1


async def test_a_token_invalidated_while_its_read_is_queued_is_not_cached() -> None:
    store = SlowStore(record())
    r = resolver(store)
    first = asyncio.ensure_future(r.resolve(APP, TOKEN, "com.example.app", "alert"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # the reader has sent its query
    r.invalidate(TOKEN)
    store.release.set()
    assert (await first).active
    store.tokens[TOKEN] = record(active=False, invalidated_at_ms=7)
    with pytest.raises(Unregistered):
        await r.resolve(APP, TOKEN, "com.example.app", "alert")
