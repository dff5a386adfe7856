"""Helpers shared by the delivery and shard integration tests (no tests here)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from connection_server import frames as f
from connection_server.client import DeviceClient
from connection_server.simulate import SimDevice
from schemas.notification import Notification, TokenKind

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = "com.example.delivery"


def notification(dev: SimDevice, n: int = 0, **kw: object) -> Notification:
    fields: dict[str, object] = {
        "apns_id": str(uuid.uuid4()),
        "app_id": dev.app_id,
        "token": dev.token,
        "topic": dev.topic,
        "payload": b'{"aps":{"alert":"n%d"},"n":%d}' % (n, n),
        "device_id": dev.device_id,
        "kind": TokenKind.LOCAL,
    }
    fields.update(kw)
    return Notification(**fields)  # type: ignore[arg-type]


class Inbox:
    """A device that records what arrives (apns-ids, in arrival order)."""

    def __init__(self, url: str, dev: SimDevice, **kw: object) -> None:
        self.pushes: list[f.Push] = []
        self.client = DeviceClient(url, dev.device_id, dev.secret, on_push=self.pushes.append, **kw)  # type: ignore[arg-type]

    @property
    def ids(self) -> list[str]:
        return [p.apns_id for p in self.pushes]

    async def __aenter__(self) -> Inbox:
        self.client.start()
        await self.client.wait_connected(15)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.stop()


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


class ShardProcess:
    """`python -m connection_server` as a child process of the test."""

    def __init__(self, shard: str, pg_dsn: str, redis_url: str, **env: str) -> None:
        environ = dict(os.environ)
        environ.update(
            PUSHGW_DATABASE_URL=pg_dsn,
            PUSHGW_REDIS_URL=redis_url,
            PUSHGW_ACK_FLUSH_MS="2",
            PUSHGW_PRESENCE_TTL_S="3",
            PUSHGW_RECONNECT_DELAY_MS="100",
            **env,
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "connection_server", "--shard", shard, "--ws-port", "0"],
            cwd=ROOT,
            env=environ,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = 0

    async def ready(self, timeout: float = 20.0) -> ShardProcess:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), timeout)
        assert line.startswith("ready "), f"shard did not start: {line!r}"
        self.port = int(line.rsplit("port=", 1)[1])
        return self

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/connect"

    def stop(self, sig: str = "TERM") -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(15 if sig == "TERM" else 9)
        return self.proc.wait(15)
