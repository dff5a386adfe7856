"""What every example needs: its command-line flags, a small REST client for
the app backend's side, and devices built on the Python SDK
(``connection_server.client.DeviceClient``).

Run any example against `make run`'s gateway after provisioning an app and an
API key as README.md shows::

    python examples/chat.py --api-key "$KEY" --bundle-id com.example.app
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

# Running `python examples/x.py` from a checkout: make the project importable.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connection_server.client import DeviceClient, payload_of
from connection_server.frames import Push


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--rest-url", default="http://127.0.0.1:8080", help="the gateway's REST API")
    p.add_argument("--ws-url", default="ws://127.0.0.1:8765/v1/connect", help="the device WebSocket endpoint")
    p.add_argument("--api-key", required=True, help="the app's REST API key (pushgw apikey create)")
    p.add_argument("--bundle-id", required=True, help="the app's bundle id (its apns-topic)")
    return p


class ApiError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class Backend:
    """The app backend's REST calls (API-key authenticated)."""

    def __init__(self, rest_url: str, api_key: str, bundle_id: str) -> None:
        self.base = rest_url.rstrip("/")
        self.bundle_id = bundle_id
        self._http = aiohttp.ClientSession(headers={"X-API-Key": api_key})

    async def close(self) -> None:
        await self._http.close()

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self._http.request(method, self.base + path, json=body) as resp:
            raw = await resp.read()
            data = json.loads(raw) if raw else None
            if resp.status >= 300:
                raise ApiError(resp.status, data)
            return data

    async def register_device(self, user_id: str | None = None) -> dict[str, str]:
        """A new device: its id and WebSocket secret (what an app gets at first launch)."""
        return await self.call("POST", "/api/v1/devices/register", {"user_id": user_id})  # type: ignore[no-any-return]

    async def issue_token(self, device_id: str, topic: str | None = None) -> str:
        body = {"topic": topic or self.bundle_id, "environment": "production"}
        return (await self.call("POST", f"/api/v1/devices/{device_id}/tokens", body))["token"]  # type: ignore[no-any-return]

    async def send(self, token: str, payload: dict[str, Any], **fields: Any) -> dict[str, Any]:
        body = {"token": token, "topic": fields.pop("topic", self.bundle_id), "payload": payload, **fields}
        return await self.call("POST", "/api/v1/send", body)  # type: ignore[no-any-return]


class Device:
    """A device running the Python SDK; records every push it gets, with arrival time."""

    def __init__(self, ws_url: str, device_id: str, secret: str, on_push: Any = None) -> None:
        self.pushes: list[tuple[float, Push, Any]] = []  # (arrival epoch s, frame, decoded payload)
        self._arrived = asyncio.Condition()
        self._on_push = on_push
        self.client = DeviceClient(ws_url, device_id, secret, on_push=self._record)

    async def _record(self, push: Push) -> None:
        payload = payload_of(push)
        self.pushes.append((time.time(), push, payload))
        if self._on_push is not None:
            await self._on_push(push, payload)
        async with self._arrived:
            self._arrived.notify_all()

    async def __aenter__(self) -> Device:
        self.client.start()
        await self.client.wait_connected(15)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.stop()

    async def wait_for(self, count: int, timeout: float) -> list[Any]:
        """The payloads of the first ``count`` pushes; TimeoutError if they do not come."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: len(self.pushes) >= count)
        return [p for _, _, p in self.pushes[:count]]


def check(condition: bool, what: str) -> None:
    """An example verifies what it shows; a broken gateway makes it exit non-zero."""
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}", flush=True)
