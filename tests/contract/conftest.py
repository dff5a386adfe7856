"""The ``store`` fixture: every contract test runs on PostgreSQL and on SQLite."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from schemas.notification import Notification, TokenKind

BACKENDS = ["postgres", "sqlite"]


def make_store(backend: str, pg_dsn: str, sqlite_path: str, **knobs: Any) -> Any:
    if backend == "postgres":
        return PostgresStore(pg_dsn, pool_size=4, **knobs)
    return SqliteStore(sqlite_path, **knobs)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(backend: str, pg_dsn: str, sqlite_path: str) -> Callable[..., Any]:
    """Build (not open) a store of the current backend on the test's database.

    Both locations are requested (a fresh PostgreSQL database is cheap) because
    async fixtures cannot be fetched lazily from a running loop.
    """

    def build(**knobs: Any) -> Any:
        return make_store(backend, pg_dsn, sqlite_path, **knobs)

    return build


@pytest.fixture
async def store(store_factory: Callable[..., Any]) -> AsyncIterator[Any]:
    s = store_factory(backlog_cap=5)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


class World:
    """A team, an app, a device with one local token: what most tests need."""

    def __init__(self, store: Any) -> None:
        self.store = store

    async def setup(self) -> World:
        await self.store.create_team("TEAM123456", "Team")
        self.app = await self.store.create_app("TEAM123456", "com.example.app", "Example")
        self.device, self.secret = await self.store.create_device(self.app.app_id, user_id="u1")
        self.token = (await self.store.issue_token(self.device.device_id, "com.example.app", _env())).token
        return self

    def note(self, **kw: Any) -> Notification:
        fields: dict[str, Any] = dict(
            apns_id=str(uuid.uuid4()),
            app_id=self.app.app_id,
            token=self.token,
            topic="com.example.app",
            payload=b'{"aps":{"alert":"hi"}}',
            device_id=self.device.device_id,
            kind=TokenKind.LOCAL,
        )
        fields.update(kw)
        return Notification(**fields)


def _env() -> Any:
    from schemas.notification import Environment

    return Environment.PRODUCTION


@pytest.fixture
async def world(store: Any) -> World:
    return await World(store).setup()
