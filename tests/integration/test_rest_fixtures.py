"""Shared fixtures for the REST tests (no tests here).

``rest`` is a real Core (SQLite or PostgreSQL, parametrized) behind the real
REST app on a real socket (aiohttp TestServer), with two apps A and B and
their API keys.  Every response that goes through ``Rest.call`` is checked
against the OpenAPI document the server publishes: its status must be one
the document lists for the operation and its body must match the schema.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from feedback.api import add_feedback_routes
from gateway.config import Config
from gateway.runtime import Core
from gateway.store.base import App
from provider_api.ratelimit import RateLimits
from provider_api.rest import build_rest_app

# --- a JSON Schema subset validator (what msgspec's schemas use) ------------------

_IGNORED = {"title", "description", "default", "examples", "format", "$comment"}
_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "object": dict,
    "array": list,
    "null": type(None),
}


def _is_type(value: Any, name: str) -> bool:
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    return isinstance(value, _TYPES[name])


def validate(value: Any, schema: dict[str, Any], root: dict[str, Any], at: str = "$") -> None:
    """Raise AssertionError naming the first place ``value`` breaks ``schema``."""
    for key, rule in schema.items():
        if key in _IGNORED:
            continue
        if key == "$ref":
            name = rule.rsplit("/", 1)[-1]
            validate(value, root["components"]["schemas"][name], root, at)
        elif key == "type":
            names = rule if isinstance(rule, list) else [rule]
            assert any(_is_type(value, n) for n in names), f"{at}: {value!r} is not {rule}"
        elif key == "anyOf":
            errors = []
            for option in rule:
                try:
                    validate(value, option, root, at)
                    break
                except AssertionError as exc:
                    errors.append(str(exc))
            else:
                raise AssertionError(f"{at}: matches no anyOf option: {errors}")
        elif key == "enum":
            assert value in rule, f"{at}: {value!r} not in {rule}"
        elif key == "const":
            assert value == rule, f"{at}: {value!r} != {rule!r}"
        elif key == "properties":
            if isinstance(value, dict):
                for name, sub in rule.items():
                    if name in value:
                        validate(value[name], sub, root, f"{at}.{name}")
        elif key == "required":
            if isinstance(value, dict):
                missing = [n for n in rule if n not in value]
                assert not missing, f"{at}: missing {missing}"
        elif key == "additionalProperties":
            if isinstance(value, dict):
                extra = [k for k in value if k not in schema.get("properties", {})]
                if rule is False:
                    assert not extra, f"{at}: unexpected {extra}"
                elif isinstance(rule, dict):
                    for k in extra:
                        validate(value[k], rule, root, f"{at}.{k}")
        elif key == "items":
            if isinstance(value, list):
                for i, item in enumerate(value):
                    validate(item, rule, root, f"{at}[{i}]")
        elif key in ("minLength", "maxLength", "minItems", "maxItems"):
            if isinstance(value, str | list):
                ok = len(value) >= rule if key.startswith("min") else len(value) <= rule
                assert ok, f"{at}: length {len(value)} breaks {key}={rule}"
        elif key in ("minimum", "maximum"):
            if _is_type(value, "number"):
                assert (value >= rule) if key == "minimum" else (value <= rule), f"{at}: {value} breaks {key}"
        elif key == "pattern":
            if isinstance(value, str):
                assert re.search(rule, value), f"{at}: {value!r} does not match {rule}"
        else:
            raise AssertionError(f"validator does not know JSON Schema keyword {key!r}")


class OpenApi:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self._routes = [(re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path) for path in doc["paths"]]

    def template(self, path: str) -> str | None:
        # Literal segments beat parameters (/devices/register vs /devices/{id}).
        path = path.partition("?")[0]  # the query string is not part of the route
        hits = [tpl for rx, tpl in self._routes if rx.match(path)]
        return min(hits, key=lambda t: t.count("{")) if hits else None

    def check(self, method: str, path: str, status: int, body: Any, raw: bytes) -> None:
        tpl = self.template(path)
        assert tpl is not None, f"{path} is not in openapi.json"
        op = self.doc["paths"][tpl].get(method.lower())
        assert op is not None, f"{method} {tpl} is not in openapi.json"
        response = op["responses"].get(str(status))
        assert response is not None, f"{method} {tpl} answered {status}, not documented ({list(op['responses'])})"
        content = response.get("content")
        if content is None:
            assert raw == b"", f"{method} {tpl} {status} must have no body"
            return
        validate(body, content["application/json"]["schema"], self.doc)


# --- the environment ---------------------------------------------------------------


@dataclass
class Tenant:
    app: App
    key: str
    bundle: str


@dataclass
class Rest:
    client: TestClient[Any, Any]
    core: Core
    openapi: OpenApi
    a: Tenant
    b: Tenant
    backend: str

    async def call(
        self, method: str, path: str, json: Any = None, *, key: str | None = None, data: bytes | None = None
    ) -> tuple[int, Any]:
        headers = {"X-API-Key": key if key is not None else self.a.key}
        if key == "":
            headers = {}
        resp = await self.client.request(method, path, json=json, data=data, headers=headers)
        raw = await resp.read()
        body = await resp.json() if raw else None
        self.openapi.check(method, path, resp.status, body, raw)
        return resp.status, body

    async def device_with_token(self, tenant: Tenant | None = None, user_id: str | None = None) -> tuple[str, str]:
        tenant = tenant or self.a
        status, dev = await self.call("POST", "/api/v1/devices/register", {"user_id": user_id}, key=tenant.key)
        assert status == 201
        status, tok = await self.call(
            "POST", f"/api/v1/devices/{dev['device_id']}/tokens", {"topic": tenant.bundle}, key=tenant.key
        )
        assert status == 201
        return dev["device_id"], tok["token"]


async def _tenant(core: Core, team: str, bundle: str) -> Tenant:
    await core.store.create_team(team, team)
    app = await core.store.create_app(team, bundle)
    return Tenant(app=app, key=await core.store.create_api_key(app.app_id), bundle=bundle)


def make_config(backend: str, pg_dsn: str, tmp_path: Any, **extra: Any) -> Config:
    if backend == "postgres":
        return Config(database_url=pg_dsn, **extra)
    return Config(data_dir=str(tmp_path / "data"), **extra)


async def open_rest(cfg: Config, backend: str, limits: RateLimits | None = None) -> AsyncIterator[Rest]:
    core = await Core.open(cfg)
    try:
        a = await _tenant(core, "TEAMAAAAAA", "com.example.alpha")
        b = await _tenant(core, "TEAMBBBBBB", "com.example.beta")
        app = build_rest_app(cfg, core, limits=limits)
        add_feedback_routes(app, core)  # as `pushgw provider-api` mounts them: same document
        server = TestServer(app)
        async with TestClient(server) as client:
            resp = await client.get("/openapi.json")
            doc = await resp.json()
            yield Rest(client=client, core=core, openapi=OpenApi(doc), a=a, b=b, backend=backend)
    finally:
        await core.close()


@pytest.fixture(name="rest", params=["sqlite", "postgres"])
async def rest_fixture(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Any) -> AsyncIterator[Rest]:
    async for env in open_rest(make_config(request.param, pg_dsn, tmp_path), request.param):
        yield env
