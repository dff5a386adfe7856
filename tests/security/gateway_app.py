"""The provider process's HTTP app, built exactly as `pushgw serve` builds it (no tests here).

``GatewayProcess`` (gateway/cli.py) composes the aiohttp app -- REST API,
feedback, ops and whatever admin routes it mounts -- and runs it on a real
socket.  The security tests need that app's route table to walk every route,
so the fixture records the app handed to ``web.AppRunner`` while the real
composition root starts.  New routes are therefore covered automatically.
"""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.cli import GatewayProcess
from gateway.config import Config

ADMIN_TOKEN = "admin-token-for-tests-0123456789abcdef"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Tenant:
    team: str
    bundle: str
    app_id: int
    key: str


@dataclass
class Gateway:
    proc: GatewayProcess
    app: web.Application
    base: str
    http: aiohttp.ClientSession
    a: Tenant
    b: Tenant

    @property
    def store(self) -> Any:
        return self.proc.core.store

    def route_patterns(self) -> dict[tuple[str, str], re.Pattern[str] | None]:
        """(method, canonical path) -> the regex a concrete path must match (None: a plain path)."""
        out: dict[tuple[str, str], re.Pattern[str] | None] = {}
        for route in self.app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            path = info.get("path") or info.get("formatter") or info.get("prefix") or ""
            if route.method != "HEAD":
                out[(route.method, path)] = info.get("pattern")
        return out

    def routes(self) -> list[tuple[str, str]]:
        """(method, canonical path) of every route the process serves."""
        out = []
        for route in self.app.router.routes():
            info = route.resource.get_info() if route.resource is not None else {}
            path = info.get("path") or info.get("formatter") or info.get("prefix") or ""
            if route.method != "HEAD":
                out.append((route.method, path))
        return sorted(set(out))

    async def call(self, method: str, path: str, key: str | None = None, json: Any = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:  # fmt: skip
        hdrs = dict(headers or {})
        if key is not None:
            hdrs["X-API-Key"] = key
        async with self.http.request(method, self.base + path, json=json, headers=hdrs) as r:
            raw = await r.read()
            try:
                body = await r.json(content_type=None) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            return r.status, body


async def _tenant(proc: GatewayProcess, team: str, bundle: str) -> Tenant:
    store = proc.core.store
    await store.create_team(team, team)
    app = await store.create_app(team, bundle)
    return Tenant(team, bundle, app.app_id, await store.create_api_key(app.app_id))


async def open_gateway(tmp: Path, **cfg: Any) -> AsyncIterator[Gateway]:
    cfg.setdefault("admin_token", ADMIN_TOKEN)  # admin_token="" runs the gateway with the admin API off
    cfg.setdefault("secret_key", "security-suite-vault-secret")  # seals the APNs credentials
    config = Config(data_dir=str(tmp / "data"), rest_port=_free_port(), http2_port=_free_port(), **cfg)
    seen: list[web.Application] = []
    original = web.AppRunner.__init__

    def recording_init(self: web.AppRunner, app: web.Application, *args: Any, **kw: Any) -> None:
        seen.append(app)
        original(self, app, *args, **kw)

    web.AppRunner.__init__ = recording_init  # type: ignore[method-assign]
    proc = GatewayProcess(config, ("provider",))
    try:
        await proc.start()
    finally:
        web.AppRunner.__init__ = original  # type: ignore[method-assign]
    try:
        a = await _tenant(proc, "TEAMAAAAAA", "com.example.alpha")
        b = await _tenant(proc, "TEAMBBBBBB", "com.example.beta")
        async with aiohttp.ClientSession() as http:
            yield Gateway(proc, seen[-1], f"http://127.0.0.1:{config.rest_port}", http, a, b)
    finally:
        await proc.stop()
