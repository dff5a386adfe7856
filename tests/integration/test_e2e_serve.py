"""Acceptance: `pushgw serve` (what `make run` starts) as a real process.

Provision with the CLI exactly as README.md shows, register a device with
the REST API, connect it with the device SDK, then push through the APNs
HTTP/2 listener with aioapns (as an app backend would) and through REST;
the device receives both and the status API reports them delivered.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aioapns import APNs, NotificationRequest, PushType
from aioapns import connection as aioapns_connection

from connection_server.client import DeviceClient

TEAM = "E2ETEAM001"
BUNDLE = "com.example.e2e"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(data_dir: Path, *args: str) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--data-dir", str(data_dir)],
        check=True,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("PUSHGW_")},
    )
    return json.loads(out.stdout)


class Served:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.rest, self.h2, self.ws = _free_port(), _free_port(), _free_port()
        self.proc: subprocess.Popen[str] | None = None

    async def start(self) -> list[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGW_")}
        self.proc = subprocess.Popen(  # noqa: ASYNC220 - started once, read via an executor
            [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(self.data_dir),
             "--rest-port", str(self.rest), "--http2-port", str(self.h2), "--ws-port", str(self.ws)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        lines: list[str] = []
        assert self.proc.stdout is not None
        loop = asyncio.get_running_loop()
        while not any("worker:" in line for line in lines):
            line = await asyncio.wait_for(loop.run_in_executor(None, self.proc.stdout.readline), 20)
            if not line:
                raise AssertionError("pushgw serve exited:\n" + "".join(lines))
            lines.append(line)
        return lines

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    srv = Served(tmp_path / "data")
    # Provision before start, as README shows (the CLI creates the store too).
    _cli(srv.data_dir, "team", "create", "--team-id", TEAM, "--name", "E2E")
    _cli(srv.data_dir, "app", "create", "--team-id", TEAM, "--bundle-id", BUNDLE)
    yield srv
    if srv.proc is not None and srv.proc.poll() is None:
        srv.stop()


async def test_make_run_gateway_end_to_end(served: Served) -> None:
    key = _cli(served.data_dir, "key", "create", "--team-id", TEAM)
    api_key = _cli(served.data_dir, "apikey", "create", "--bundle-id", BUNDLE)["api_key"]
    assert "BEGIN PRIVATE KEY" in key["private_key_p8"]
    banner = await served.start()
    assert any(f":{served.rest}/" in line for line in banner), banner

    base = f"http://127.0.0.1:{served.rest}"
    headers = {"X-API-Key": api_key}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(f"{base}/api/v1/devices/register", json={}) as r:
            assert r.status == 201, await r.text()
            dev = await r.json()
        async with http.post(
            f"{base}/api/v1/devices/{dev['device_id']}/tokens", json={"topic": BUNDLE, "environment": "production"}
        ) as r:
            assert r.status in (200, 201), await r.text()
            token = (await r.json())["token"]

        got: list[dict] = []  # type: ignore[type-arg]
        arrived = asyncio.Event()

        def on_push(push) -> None:  # type: ignore[no-untyped-def]
            got.append({"id": push.apns_id, "payload": push.payload})
            if len(got) >= 2:
                arrived.set()

        url = f"ws://127.0.0.1:{served.ws}/v1/connect"
        device = DeviceClient(url, dev["device_id"], dev["secret"], on_push=on_push)
        device.start()
        try:
            await asyncio.wait_for(device.wait_connected(), 10)

            # 1. An app backend's APNs client, pointed at pushgw (h2c).
            classes = (aioapns_connection.APNsProductionClientProtocol,)
            saved = [(c, c.APNS_SERVER, c.APNS_PORT) for c in classes]
            for c in classes:
                c.APNS_SERVER, c.APNS_PORT = "127.0.0.1", served.h2

            class H2cPool(aioapns_connection.APNsKeyConnectionPool):
                async def _create_connection(self, factory):  # type: ignore[no-untyped-def]
                    _, proto = await self.loop.create_connection(
                        factory, host=self.protocol_class.APNS_SERVER, port=self.protocol_class.APNS_PORT
                    )
                    return proto

            creds = {"key": key["private_key_p8"], "key_id": key["key_id"], "team_id": TEAM, "topic": BUNDLE}
            client = APNs(**creds, use_sandbox=False)
            client.pool = H2cPool(**creds)
            h2_id = str(uuid.uuid4())
            try:
                res = await client.send_notification(
                    NotificationRequest(
                        device_token=token, message={"aps": {"alert": "via h2"}}, notification_id=h2_id,
                        push_type=PushType.ALERT,
                    )
                )  # fmt: skip
                assert res.is_successful, (res.status, res.description)
            finally:
                client.pool.close()
                for c, server, port in saved:
                    c.APNS_SERVER, c.APNS_PORT = server, port

            # 2. The REST API.
            async with http.post(
                f"{base}/api/v1/send", json={"token": token, "topic": BUNDLE, "payload": {"aps": {"alert": "via rest"}}}
            ) as r:
                assert r.status == 200, await r.text()
                rest_id = (await r.json())["apns_id"]

            await asyncio.wait_for(arrived.wait(), 10)
            assert {g["id"] for g in got} == {h2_id, rest_id}

            # Status becomes delivered once the ack is flushed.
            for _ in range(50):
                async with http.get(f"{base}/api/v1/notifications/{h2_id}") as r:
                    status = await r.json()
                if status.get("status") == "delivered":
                    break
                await asyncio.sleep(0.1)
            assert status["status"] == "delivered", status
            assert status["timeline"][0]["event"] == "accepted"
        finally:
            await device.stop()

    assert served.stop() == 0
