"""`pushgw serve` as a real child process for the abuse and security suites (no tests here).

Embedded mode (SQLite in a temporary directory, in-process bus): every
listener of the gateway -- REST/ops HTTP, the APNs HTTP/2 listener, the device
WebSocket -- on free ports, provisioned with the CLI exactly as README.md
shows.  Its output goes to a file so that a test can read every log line.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
TEAM = "ABUSETEAM1"
BUNDLE = "com.example.abuse"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _clean_env(**env: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGW_")}
    out.update(env)
    return out


class Served:
    """One `python -m gateway.cli serve` process; ``env`` are PUSHGW_* overrides."""

    def __init__(self, tmp: Path, **env: str) -> None:
        self.data_dir = tmp / "data"
        self.log_path = tmp / "serve.log"
        self.rest, self.h2, self.ws = free_port(), free_port(), free_port()
        self.env = _clean_env(**env)
        self.proc: subprocess.Popen[bytes] | None = None
        self.api_key = ""
        self.key: dict[str, Any] = {}
        self.tls = bool(env.get("PUSHGW_TLS_CERT"))

    def cli(self, *args: str) -> Any:
        out = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *args, "--data-dir", str(self.data_dir)],
            check=True, capture_output=True, text=True, env=self.env, cwd=ROOT,
        )  # fmt: skip
        return json.loads(out.stdout)

    def provision(self, team: str = TEAM, bundle: str = BUNDLE) -> str:
        """Team, app, provider key and API key; returns the API key."""
        self.cli("team", "create", "--team-id", team)
        self.cli("app", "create", "--team-id", team, "--bundle-id", bundle)
        self.key = self.cli("key", "create", "--team-id", team)
        self.api_key = self.cli("apikey", "create", "--bundle-id", bundle)["api_key"]
        return self.api_key

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait for the banner (blocking: usable from module-scoped fixtures)."""
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(self.data_dir),
                 "--rest-port", str(self.rest), "--http2-port", str(self.h2), "--ws-port", str(self.ws)],
                stdout=log, stderr=subprocess.STDOUT, env=self.env, cwd=ROOT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while "worker:" not in self.log():
            assert self.proc.poll() is None, f"pushgw serve exited: {self.log()}"
            assert time.monotonic() < deadline, f"pushgw serve not ready: {self.log()}"
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def rss_kib(self) -> int:
        """Resident memory of the server process (from /proc)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    @property
    def base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.rest}"

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.ws}/v1/connect"

    async def send(self, http: aiohttp.ClientSession, token: str, topic: str = BUNDLE) -> str:
        """One REST push to ``token``; returns its apns-id."""
        body = {"token": token, "topic": topic, "payload": {"aps": {"alert": "hi"}}}
        async with http.post(f"{self.base}/api/v1/send", json=body, headers={"X-API-Key": self.api_key}) as r:
            assert r.status == 200, await r.text()
            return str((await r.json())["apns_id"])

    async def status(self, http: aiohttp.ClientSession, apns_id: str) -> str:
        async with http.get(f"{self.base}/api/v1/notifications/{apns_id}", headers={"X-API-Key": self.api_key}) as r:
            assert r.status == 200, await r.text()
            return str((await r.json())["status"])

    async def device(self, http: aiohttp.ClientSession, topic: str = BUNDLE) -> tuple[str, str, str]:
        """Register a device with a token over REST: (device_id, secret, token)."""
        async with http.post(f"{self.base}/api/v1/devices/register", json={},
                             headers={"X-API-Key": self.api_key}) as r:  # fmt: skip
            assert r.status == 201, await r.text()
            dev = await r.json()
        async with http.post(f"{self.base}/api/v1/devices/{dev['device_id']}/tokens", json={"topic": topic},
                             headers={"X-API-Key": self.api_key}) as r:  # fmt: skip
            assert r.status == 201, await r.text()
            token = (await r.json())["token"]
        return dev["device_id"], dev["secret"], token


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``check`` (plain or async) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        ok = check()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


def client_ssl(cafile: str, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=cafile)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx
