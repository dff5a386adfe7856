"""`pushgw device simulate --count N`: simulated devices that print what arrives.

``provision`` creates the devices (and one token each) in the store, so a
provider can push to the printed tokens at once; ``simulate`` connects them
with the SDK and prints one line per push until stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable
from typing import TextIO

import msgspec

from connection_server import frames as f
from connection_server.client import DeviceClient
from gateway.store.base import Store
from schemas.notification import Environment


class SimDevice(msgspec.Struct, frozen=True):
    device_id: str
    secret: str
    token: str
    app_id: int
    topic: str


async def provision(
    store: Store,
    bundle_id: str,
    count: int,
    environment: Environment = Environment.PRODUCTION,
    team_id: str = "SIMTEAM001",
) -> list[SimDevice]:
    """Create (or reuse) the app for ``bundle_id`` and ``count`` new devices with one token each."""
    app = await store.get_app_by_bundle(bundle_id)
    if app is None:
        teams = {a.team_id for a in await store.list_apps()}
        if team_id not in teams:
            try:
                await store.create_team(team_id, "simulated devices")
            except Exception:  # already exists without apps
                pass
        app = await store.create_app(team_id, bundle_id, "simulator")
    out: list[SimDevice] = []
    for _ in range(count):
        device, secret = await store.create_device(app.app_id)
        token = await store.issue_token(device.device_id, bundle_id, environment)
        out.append(SimDevice(device.device_id, secret, token.token, app.app_id, bundle_id))
    return out


async def simulate(
    url: str,
    devices: list[SimDevice],
    *,
    duration_s: float | None = None,
    out: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> int:
    """Connect every device and print each push as it arrives.  Returns the
    number of pushes received (duplicates excluded)."""
    received = 0

    def printer(dev: SimDevice) -> Callable[[f.Push], None]:
        def on_push(push: f.Push) -> None:
            nonlocal received
            received += 1
            out(f"{dev.device_id} token={push.token[:8]}… apns-id={push.apns_id} priority={push.priority} "
                f"payload={bytes(push.payload).decode()}")  # fmt: skip

        return on_push

    def overflow(n: int) -> None:
        out(f"overflow: {n} dropped")

    clients = [DeviceClient(url, d.device_id, d.secret, on_push=printer(d), on_overflow=overflow) for d in devices]
    for c in clients:
        c.start()
    stop = stop or asyncio.Event()
    try:
        await asyncio.gather(*(c.wait_connected(30) for c in clients))
        out(f"{len(clients)} devices connected to {url}")
        try:
            await asyncio.wait_for(stop.wait(), duration_s)
        except TimeoutError:
            pass
    finally:
        await asyncio.gather(*(c.stop() for c in clients))
    return received


def main(argv: list[str], stdout: TextIO = sys.stdout) -> int:
    p = argparse.ArgumentParser(prog="pushgw device simulate")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--url", default=None, help="ws://host:port/v1/connect (default from config)")
    p.add_argument("--bundle-id", default="com.example.simulated")
    p.add_argument("--environment", choices=["sandbox", "production"], default="production")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: until Ctrl-C)")
    p.add_argument("--config", default=None)
    p.add_argument("--data-dir", default=None, help="embedded store directory (as given to `pushgw serve`)")
    args = p.parse_args(argv)

    from gateway.config import from_environ
    from gateway.runtime import Core

    def say(line: str) -> None:
        print(line, file=stdout, flush=True)

    async def run() -> int:
        cfg = from_environ(args.config, data_dir=args.data_dir)
        core = await Core.open(cfg)
        try:
            devices = await provision(core.store, args.bundle_id, args.count, Environment(args.environment))
        finally:
            await core.close()
        for d in devices:
            say(f"device {d.device_id} token {d.token} topic {args.bundle_id}")
        url = args.url or f"ws://{cfg.host}:{cfg.ws_port}/v1/connect"
        await simulate(url, devices, duration_s=args.duration, out=say)
        return 0

    try:
        return asyncio.run(run())
    except KeyboardInterrupt:
        return 0
