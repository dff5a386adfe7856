"""What a scenario needs from a system under test, for pushgw and for Mosquitto alike.

A ``Target`` has device credentials for the fleet, the ports devices dial,
how to build its provider-side senders, which pids are "the server" for RSS
and CPU, and how to stop.  Scenarios are written once against it.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from loadtest.harness.mosquitto_target import Mosquitto
from loadtest.harness.pushgw_target import BUNDLE, PushgwCluster


@dataclass
class Target:
    name: str  # "pushgw" | "mosquitto"
    kind: str  # the fleet's device protocol: "pushgw" | "mqtt"
    ports: list[int]
    devices: list[tuple[str, str]]  # what the fleet dials with
    addresses: list[str]  # what senders push to: tokens or client ids
    sender_specs: list[dict[str, Any]]  # Sender(**spec) each; the rate is split evenly
    server_pids: Callable[[], list[int]]
    stop: Callable[[], Awaitable[None]]
    info: dict[str, Any] = field(default_factory=dict)
    cluster: PushgwCluster | None = None
    #: Processes of the system under test by role (for the CPU breakdown).
    role_pids: Callable[[], dict[str, list[int]]] = dict


async def pushgw(admin_dsn: str, redis_url: str, devices: int, shards: int, *, worker: bool = False,
                 channel: str = "", paths: tuple[str, ...] = ("h2", "rest")) -> Target:  # fmt: skip
    cluster = PushgwCluster(admin_dsn, redis_url, shards, worker=worker)
    try:
        t = time.time()
        await cluster.create()
        devs = await cluster.provision(devices, channel=channel)
        print(f"   provisioned {devices:,} devices in {time.time() - t:.1f} s", flush=True)
        await cluster.start()
    except BaseException:
        await cluster.stop()
        raise
    tokens = [t for _d, _s, t in devs]
    specs = []
    for path in paths:
        if path == "h2":
            specs.append({"kind": "h2", "port": cluster.h2_port, "credential": cluster.jwt, "topic": BUNDLE,
                          "connections": 4})  # fmt: skip
        else:
            specs.append({"kind": "rest", "port": cluster.rest_port, "credential": cluster.api_key, "topic": BUNDLE,
                          "connections": 8})  # fmt: skip
    return Target(
        name="pushgw", kind="pushgw", ports=cluster.ws_ports, devices=[(d, s) for d, s, _t in devs],
        addresses=tokens, sender_specs=specs,
        server_pids=lambda: cluster.shard_pids() + ([cluster.api.pid] if cluster.api else []),
        stop=cluster.stop, cluster=cluster, role_pids=cluster.role_pids,
        info={"shards": shards, "store": "PostgreSQL (commit per batch)", "paths": list(paths)},
    )  # fmt: skip


async def mosquitto(devices: int, publishers: int = 2) -> Target:
    broker = Mosquitto()
    await broker.start()
    ids = [f"d{i}" for i in range(devices)]
    return Target(
        name="mosquitto", kind="mqtt", ports=[broker.port], devices=[(i, "") for i in ids], addresses=ids,
        sender_specs=[{"kind": "mqtt", "port": broker.port, "connections": 2} for _ in range(publishers)],
        server_pids=broker.pids, stop=broker.stop, role_pids=lambda: {"mosquitto": broker.pids()},
        info={"version": broker.version, "persistence": "periodic snapshot (autosave)", "qos": 1,
              "max_inflight_messages": broker.window},
    )  # fmt: skip
