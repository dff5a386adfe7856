"""A pushgw cluster on loopback for one harness run: fresh database, shards, API, optional worker.

Shards run as ``python -m connection_server`` (the entry point that tunes the
garbage collector), the API as ``pushgw provider-api`` (HTTP/2 + REST), the
worker (route repair) as ``pushgw worker``.  Every process is stopped by its
pid; the database is dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from loadtest.harness.procs import free_port, free_port_block, rss_kib, service_pids, wait_listening

ROOT = Path(__file__).resolve().parents[2]
TEAM, KID, BUNDLE = "LOADTEAM01", "LOADKEY001", "com.loadtest.app"


class PushgwCluster:
    def __init__(self, admin_dsn: str, redis_url: str, shards: int, worker: bool = False) -> None:
        self.admin_dsn = admin_dsn
        self.redis_url = redis_url
        self.n_shards = shards
        self.with_worker = worker
        self.db = "loadtest_" + uuid.uuid4().hex[:8]
        self.dsn = admin_dsn.rsplit("/", 1)[0] + "/" + self.db
        self.ws_ports = [0] * shards
        self.shards: list[subprocess.Popen[str] | None] = [None] * shards
        self.others: list[subprocess.Popen[bytes]] = []
        self.api: subprocess.Popen[bytes] | None = None
        self.rest_port = self.h2_port = 0
        self.jwt = self.api_key = ""
        self.devices: list[tuple[str, str, str]] = []  # (device_id, secret, token)
        self.core: Any = None

    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, PUSHGW_DATABASE_URL=self.dsn, PUSHGW_REDIS_URL=self.redis_url,
                    PUSHGW_LOG_LEVEL="warning")  # fmt: skip

    # -- set-up -------------------------------------------------------------------------

    async def create(self) -> None:
        import jwt
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from gateway.config import Config
        from gateway.runtime import Core

        conn = await asyncpg.connect(self.admin_dsn)
        await conn.execute(f'CREATE DATABASE "{self.db}"')
        await conn.close()
        self.core = await Core.open(Config(database_url=self.dsn, redis_url=self.redis_url, shard_id="loadtest"))
        store = self.core.store
        await store.create_team(TEAM, "loadtest")
        self.app = await store.create_app(TEAM, BUNDLE)
        priv = ec.generate_private_key(ec.SECP256R1())
        pub = (
            priv.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        await store.add_provider_key(TEAM, KID, pub)
        self.jwt = jwt.encode({"iss": TEAM, "iat": int(time.time())}, priv, algorithm="ES256", headers={"kid": KID})
        self.api_key = await store.create_api_key(self.app.app_id)

    async def provision(self, n: int, channel: str = "") -> list[tuple[str, str, str]]:
        """``n`` more devices with one token each (subscribed to ``channel`` when given).

        Bulk-loaded with COPY, the same rows ``create_device`` and ``issue_token``
        write (sha256 of the secret, 64-hex tokens), so 100,000 devices take
        seconds instead of minutes.  A test checks that they can connect.
        """
        from gateway.store import hashing

        at = int(time.time() * 1000)
        new = [(hashing.new_device_id(), hashing.new_secret(), hashing.new_token()) for _ in range(n)]
        app_id = self.app.app_id
        conn = await asyncpg.connect(self.dsn)
        try:
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "devices", columns=["device_id", "app_id", "user_id", "secret_hash", "created_at_ms"],
                    records=[(d, app_id, None, hashing.hash_secret(sec), at) for d, sec, _t in new],
                )  # fmt: skip
                await conn.copy_records_to_table(
                    "tokens",
                    columns=["token", "app_id", "device_id", "topic", "environment", "kind", "active", "user_id",
                             "created_at_ms"],
                    records=[(t, app_id, d, BUNDLE, "production", "local", True, None, at) for d, _s, t in new],
                )  # fmt: skip
                if channel:
                    await conn.copy_records_to_table(
                        "subscriptions", columns=["app_id", "channel", "token"],
                        records=[(app_id, channel, t) for _d, _s, t in new],
                    )  # fmt: skip
        finally:
            await conn.close()
        self.devices.extend(new)
        return new

    async def start(self) -> None:
        for i in range(self.n_shards):
            await self.start_shard(i)
        self.rest_port, self.h2_port = free_port(), free_port()
        base = [sys.executable, "-m", "gateway.cli"]
        self.api = subprocess.Popen(  # noqa: ASYNC220 -- start-up, before any measurement
            [*base, "provider-api", "--rest-port", str(self.rest_port), "--http2-port", str(self.h2_port)],
            cwd=ROOT, env=self.env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        self.others.append(self.api)
        if self.with_worker:
            self.others.append(
                subprocess.Popen(  # noqa: ASYNC220
                    [*base, "worker", "--rest-port", str(free_port_block(1))],
                    cwd=ROOT,
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                )
            )
        await wait_listening(self.rest_port)
        await wait_listening(self.h2_port)

    async def start_shard(self, i: int) -> None:
        proc = subprocess.Popen(  # noqa: ASYNC220 -- start-up or a deliberate restart
            [sys.executable, "-m", "connection_server", "--shard", str(i), "--ws-port", str(self.ws_ports[i])],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 60)
        if "port=" not in line:
            raise RuntimeError(f"shard {i} did not start: {line!r}")
        self.ws_ports[i] = int(line.rsplit("port=", 1)[1])
        self.shards[i] = proc

    def kill_shard(self, i: int) -> None:
        proc = self.shards[i]
        if proc is not None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            self.shards[i] = None

    # -- measurements -------------------------------------------------------------------

    def shard_pids(self) -> list[int]:
        return [p.pid for p in self.shards if p is not None]

    def role_pids(self) -> dict[str, list[int]]:
        """pushgw's processes by role, with the PostgreSQL and Redis serving them."""
        from urllib.parse import urlsplit

        roles = {"shards": self.shard_pids(), "api": [self.api.pid] if self.api is not None else []}
        if self.with_worker:
            roles["worker"] = [p.pid for p in self.others if p is not self.api]
        roles.update(service_pids(urlsplit(self.dsn).port, urlsplit(self.redis_url).port))
        return roles

    def shard_rss_kib(self) -> int:
        return sum(rss_kib(pid) for pid in self.shard_pids())

    def api_rss_kib(self) -> int:
        return rss_kib(self.api.pid) if self.api is not None else 0

    async def pending_count(self) -> int:
        conn = await asyncpg.connect(self.dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM notifications WHERE status = 'pending'") or 0)
        finally:
            await conn.close()

    # -- tear-down ----------------------------------------------------------------------

    async def stop(self) -> None:
        procs: list[subprocess.Popen[Any]] = [p for p in self.shards if p is not None] + self.others
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                await asyncio.to_thread(p.wait, 20)
            except subprocess.TimeoutExpired:
                p.kill()
                await asyncio.to_thread(p.wait, 5)
        if self.core is not None:
            await self.core.close()
        conn = await asyncpg.connect(self.admin_dsn)
        await conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
        await conn.close()
