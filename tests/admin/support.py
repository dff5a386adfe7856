"""A whole gateway (provider, shard, worker roles) in the test's event loop,
on the embedded default (SQLite) or on the real PostgreSQL + Redis, with an
admin token, plus helpers to provision through the admin API and to drive
devices through the REST API and the device SDK."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from connection_server.client import DeviceClient
from gateway.cli import ROLES, GatewayProcess
from gateway.config import Config

ADMIN_TOKEN = "test-admin-token-0123456789"
TEAM = "ADMINTEAM1"
BUNDLE = "com.example.admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Rig:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.proc = GatewayProcess(cfg, ROLES)
        self.base = f"http://127.0.0.1:{cfg.rest_port}"
        self.admin_base = f"{self.base}/admin/api/v1"
        self.ws_url = f"ws://127.0.0.1:{cfg.ws_port}/v1/connect"
        self.http: aiohttp.ClientSession | None = None
        self.api_key = ""
        self.devices: list[DeviceClient] = []

    async def start(self) -> None:
        await self.proc.start()
        self.http = aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})

    async def stop(self) -> None:
        for dev in self.devices:
            await dev.stop()
        if self.http is not None:
            await self.http.close()
        await self.proc.stop()

    async def admin(self, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
        assert self.http is not None
        async with self.http.request(method, self.admin_base + path, **kw) as r:
            body = await r.json() if r.status != 204 else None
            assert r.status == expect, (method, path, r.status, body)
            return body

    async def provision(self) -> None:
        await self.admin("POST", "/teams", 201, json={"team_id": TEAM, "name": "Admin team"})
        await self.admin("POST", "/apps", 201, json={"team_id": TEAM, "bundle_id": BUNDLE})
        self.api_key = (await self.admin("POST", f"/apps/{BUNDLE}/apikeys", 201))["api_key"]

    async def rest(self, method: str, path: str, **kw: Any) -> Any:
        async with aiohttp.ClientSession(headers={"X-API-Key": self.api_key}) as http:
            async with http.request(method, self.base + path, **kw) as r:
                assert r.status in (200, 201), (path, r.status, await r.text())
                return await r.json()

    async def new_device(self, user_id: str | None = None, connect: bool = True) -> tuple[str, str, DeviceClient]:
        """(device_id, token, client); the client is connected when ``connect``."""
        body = {"user_id": user_id} if user_id else {}
        creds = await self.rest("POST", "/api/v1/devices/register", json=body)
        tok = await self.rest(
            "POST", f"/api/v1/devices/{creds['device_id']}/tokens", json={"topic": BUNDLE, "environment": "production"}
        )
        client = DeviceClient(self.ws_url, creds["device_id"], creds["secret"])
        if connect:
            client.start()
            await client.wait_connected()
            self.devices.append(client)
        return creds["device_id"], tok["token"], client

    async def send(self, token: str, text: str = "hi", **extra: Any) -> str:
        body = {"token": token, "topic": BUNDLE, "payload": {"aps": {"alert": text}}, **extra}
        return str((await self.rest("POST", "/api/v1/send", json=body))["apns_id"])


@contextlib.asynccontextmanager
async def provisioned_rig(cfg: Config) -> AsyncIterator[Rig]:
    """A started gateway with its team, app and keys; always stopped."""
    r = Rig(cfg)
    await r.start()
    await r.provision()
    try:
        yield r
    finally:
        await r.stop()


async def eventually(check: Any, timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll an async ``check`` until it returns a truthy value."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def rig_config(backend: str, tmp_path: Any, pg_dsn: str = "", redis_url: str = "", **extra: Any) -> Config:
    common = dict(
        admin_token=ADMIN_TOKEN,
        rest_port=free_port(),
        http2_port=free_port(),
        ws_port=free_port(),
        data_dir=str(tmp_path),
        **extra,
    )
    if backend == "embedded":
        return Config(**common)
    return Config(database_url=pg_dsn, redis_url=redis_url, **common)
