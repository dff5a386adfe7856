"""The named scenarios: connect, online, offline-drain, fan-out, mixed.

Each builds its target fresh, runs bounded in count and time, accounts for
every message id it had accepted, and returns one result dict (figures,
accounting, time series) for the JSON file and the HTML report.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from loadtest.harness import targets
from loadtest.harness.fleet import Fleet
from loadtest.harness.latency import Recorder
from loadtest.harness.ledger import Ledger
from loadtest.harness.rpc import Remote
from loadtest.harness.senders import Sender
from loadtest.harness.targets import Target
from loadtest.harness.timeline import Timeline, cpu_breakdown


@dataclass
class Options:
    admin_dsn: str
    redis_url: str
    shards: int = 2
    procs: int = 4
    connect_devices: int = 10_000
    connect_rate: float = 0.0  # new connections/s over all load processes; 0 = as fast as they go
    online_devices: int = 10_000
    steps: list[float] = field(default_factory=lambda: [1000.0, 2000.0, 5000.0])
    step_seconds: float = 8.0
    drain_devices: int = 5_000
    drain_per_device: int = 10
    fanout_devices: int = 10_000
    mixed_devices: int = 5_000
    mixed_rate: float = 1000.0
    mixed_seconds: float = 20.0
    grace: float = 10.0  # after the last send: wait this long without progress before counting losses
    inject_drop: int = 0
    inject_duplicate: int = 0


def _senders(target: Target, t0: float) -> list[Remote]:
    return [Remote(Sender, targets=target.addresses, t0=t0, **spec) for spec in target.sender_specs]


async def _settle(fleet: Fleet, expected: int, grace: float, limit: float = 60.0) -> None:
    """Wait until ``expected`` messages arrived, or nothing arrived for ``grace`` seconds."""
    last, last_change, deadline = -1, time.monotonic(), time.monotonic() + limit
    while time.monotonic() < deadline:
        got = (await fleet.stats())["received"]
        if got >= expected:
            return
        if got != last:
            last, last_change = got, time.monotonic()
        elif time.monotonic() - last_change > grace:
            return
        await asyncio.sleep(0.2)


async def _collect(fleet: Fleet, senders: list[Remote], t0: float) -> tuple[Ledger, dict[str, Any], dict[str, Any]]:
    ledger = Ledger()
    accept_latency = Recorder(t0)
    accepted_per_s: dict[int, int] = {}
    rejected: dict[str, int] = {}
    for s in senders:
        r = await s.call("report", timeout=120)
        ledger.add_accepted(r["accepted_ids"])
        accept_latency.merge(r["accept_latency"])
        for sec, n in r["accepted_per_second"].items():
            accepted_per_s[int(sec)] = accepted_per_s.get(int(sec), 0) + n
        for reason, n in r["rejected"].items():
            rejected[reason] = rejected.get(reason, 0) + n
    ledger.rejected = sum(rejected.values())
    seen = await fleet.report(t0)
    ledger.add_received(seen["counts"])
    extra = {"accept_latency": accept_latency, "accepted_per_s": accepted_per_s, "rejected_reasons": rejected}
    return ledger, seen, extra


async def _warm_up(fleet: Fleet, senders: list[Remote]) -> None:
    """Start the sender processes, open their connections and send a little (first JWT check, pools,
    code paths) before the clock starts; then forget what was counted."""
    await asyncio.gather(*(s.call("run", steps=[(20.0, 1.0)], timeout=120) for s in senders))
    await _settle(fleet, await _accepted(senders), 3.0, limit=20.0)


async def _accepted(senders: list[Remote]) -> int:
    return sum(r["accepted"] for r in await asyncio.gather(*(s.call("stats", timeout=30) for s in senders)))


def _window(rec: Recorder, start: float, end: float) -> tuple[int, dict[str, float]]:
    merged = Recorder(0)
    for sec, h in rec.per_second.items():
        if start <= sec < end:
            merged.total.add(h)
    return merged.total.get_total_count(), merged.percentiles_ms()


async def _close(fleet: Fleet | None, senders: list[Remote], target: Target | None) -> None:
    for s in senders:
        await s.close()
    if fleet is not None:
        await fleet.close()
    if target is not None:
        await target.stop()


# -- connect ---------------------------------------------------------------------------


async def connect(opt: Options) -> dict[str, Any]:
    n = opt.connect_devices
    shards = max(opt.shards, -(-n // 18_000))
    target = await targets.pushgw(opt.admin_dsn, opt.redis_url, n, shards)
    fleet = None
    try:
        assert target.cluster is not None
        await asyncio.sleep(1.0)
        rss0 = target.cluster.shard_rss_kib()
        t0 = time.time()
        fleet = Fleet("pushgw", target.ports, target.devices, opt.procs, t0)
        timeline = Timeline("connect", t0, fleet, [], target.server_pids, roles=target.role_pids)
        timeline.start()
        result = await fleet.connect(rate=opt.connect_rate)
        await asyncio.sleep(3.0)  # let the shards settle (keepalive, pools) before reading RSS
        await timeline.stop()
        rss1 = target.cluster.shard_rss_kib()
        connected = (await fleet.stats())["connected"]
        from loadtest.harness.procs import rss_kib

        load_rss = sum(rss_kib(p) for p in fleet.pids())
        return {
            "scenario": "connect", "target": "pushgw",
            "params": {"devices": n, "shards": shards, "load_processes": len(fleet.swarms),
                       "rate_cap": opt.connect_rate or None},
            "figures": {
                "connected": connected, "failed": sum(result["failed"].values()), "failures": result["failed"],
                "connect_seconds": round(result["seconds"], 2),
                "connects_per_s": round(connected / result["seconds"]) if result["seconds"] else 0,
                "shard_rss_before_kib": rss0, "shard_rss_after_kib": rss1,
                "rss_per_connection_kib": round((rss1 - rss0) / max(1, connected), 2),
                "load_generator_rss_per_connection_kib": round(load_rss / max(1, connected), 2),
            },
            "accounting": {},
            "cpu": cpu_breakdown(timeline.samples, connected),
            "series": {"timeline": timeline.samples},
        }  # fmt: skip
    finally:
        await _close(fleet, [], target)


# -- online ----------------------------------------------------------------------------


async def online(opt: Options, system: str) -> dict[str, Any]:
    n = opt.online_devices
    target = await (
        targets.pushgw(opt.admin_dsn, opt.redis_url, n, opt.shards) if system == "pushgw" else targets.mosquitto(n)
    )
    fleet, senders = None, []
    try:
        t0 = time.time()
        fleet = Fleet(target.kind, target.ports, target.devices, opt.procs, t0,
                      drop_first=opt.inject_drop, duplicate_first=opt.inject_duplicate)  # fmt: skip
        conn = await fleet.connect()
        senders = _senders(target, t0)
        await _warm_up(fleet, senders)
        t0 = time.time()
        await fleet.reset(t0)
        await asyncio.gather(*(s.call("reset", t0=t0) for s in senders))
        timeline = Timeline(f"online {system}", t0, fleet, senders, target.server_pids, roles=target.role_pids)
        timeline.start()
        share = len(senders)
        steps = [(rate / share, opt.step_seconds) for rate in opt.steps]
        await asyncio.gather(
            *(s.call("run", steps=steps, timeout=len(steps) * opt.step_seconds + 120) for s in senders)
        )
        accepted_total = await _accepted(senders)
        await _settle(fleet, accepted_total, opt.grace)
        await timeline.stop()
        ledger, seen, extra = await _collect(fleet, senders, t0)
        per_step = []
        for k, rate in enumerate(opt.steps):
            a, b = k * opt.step_seconds, (k + 1) * opt.step_seconds
            delivered, pct = _window(seen["latency"], a, b)
            accepted = sum(v for sec, v in extra["accepted_per_s"].items() if a <= sec < b)
            per_step.append({"offered_per_s": rate, "accepted_per_s": round(accepted / opt.step_seconds),
                             "delivered_per_s": round(delivered / opt.step_seconds), "latency_ms": pct})  # fmt: skip
        return {
            "scenario": "online", "target": system,
            "params": {"devices": n, "steps": opt.steps, "step_seconds": opt.step_seconds,
                       "load_processes": len(fleet.swarms), "senders": [s["kind"] for s in target.sender_specs],
                       **target.info},
            "figures": {
                "connected": conn["connected"], "connect_failures": conn["failed"], "steps": per_step,
                "latency_ms": seen["latency"].percentiles_ms(),
                "accept_latency_ms": extra["accept_latency"].percentiles_ms(),
                "rejected_reasons": extra["rejected_reasons"], "close_codes": seen["close_codes"],
            },
            "accounting": ledger.summary(),
            "cpu": cpu_breakdown(timeline.samples, sum(seen["counts"].values())),
            "series": {"timeline": timeline.samples, "latency": seen["latency"].series()},
        }  # fmt: skip
    finally:
        await _close(fleet, senders, target)


# -- offline-drain -----------------------------------------------------------------------


async def offline_drain(opt: Options, system: str) -> dict[str, Any]:
    n, k = opt.drain_devices, opt.drain_per_device
    target = await (
        targets.pushgw(opt.admin_dsn, opt.redis_url, n, opt.shards, paths=("rest",))
        if system == "pushgw"
        else targets.mosquitto(n)
    )
    fleet, senders = None, []
    try:
        t0 = time.time()
        fleet = Fleet(target.kind, target.ports, target.devices, opt.procs, t0)
        await fleet.connect()  # MQTT: creates each persistent session and its subscription
        await fleet.disconnect()
        senders = _senders(target, t0)
        owed = [a for a in target.addresses for _ in range(k)]
        random.shuffle(owed)
        chunks = [owed[i :: len(senders)] for i in range(len(senders))]
        t_store = time.time()
        await asyncio.gather(
            *(s.call("run", steps=[], targets=c, timeout=900) for s, c in zip(senders, chunks, strict=False))
        )
        stored = await _accepted(senders)
        store_s = time.time() - t_store
        await asyncio.sleep(1.0)
        t0 = time.time()
        await fleet.reset(t0)
        timeline = Timeline(
            f"offline-drain {system}", t0, fleet, [], target.server_pids, interval=0.5, roles=target.role_pids
        )
        timeline.start()
        storm = asyncio.create_task(fleet.connect())
        t_connected = received_at_connected = None
        t_empty = None
        deadline = time.monotonic() + 600
        last, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            st = await fleet.stats()
            if t_connected is None and storm.done():
                t_connected, received_at_connected = time.time(), st["received"]
            if st["received"] >= stored:
                t_empty = st["last_at"]
                break
            if st["received"] != last:
                last, last_change = st["received"], time.monotonic()
            elif time.monotonic() - last_change > opt.grace and storm.done():
                break
            await asyncio.sleep(0.05)
        conn = await storm
        if t_connected is None:
            t_connected, received_at_connected = t0 + conn["seconds"], stored
        await _settle(fleet, stored, 2.0, limit=5.0)
        await timeline.stop()
        ledger, _seen, _extra = await _collect(fleet, senders, t0)
        reconnect_s = conn["seconds"]
        empty_s = (t_empty - t0) if t_empty else None
        after = stored - (received_at_connected or 0)
        drain_after = (after / (t_empty - t_connected)) if t_empty and t_empty > t_connected and after > 0 else None
        return {
            "scenario": "offline-drain", "target": system,
            "params": {"devices": n, "stored_per_device": k, "load_processes": len(fleet.swarms), **target.info},
            "figures": {
                "stored": stored, "store_seconds": round(store_s, 2),
                "reconnect_seconds": round(reconnect_s, 2),
                "reconnects_per_s": round(conn["connected"] / reconnect_s) if reconnect_s else 0,
                "time_to_empty_s": round(empty_s, 2) if empty_s else None,
                "drain_per_s_overall": round(stored / empty_s) if empty_s else None,
                "delivered_during_storm": received_at_connected,
                "drain_per_s_after_connected": round(drain_after) if drain_after else None,
                "drain_bounded_by_reconnects": bool(after < 0.1 * stored),
            },
            "accounting": ledger.summary(),
            "cpu": cpu_breakdown(timeline.samples, stored),
            "series": {"timeline": timeline.samples},
        }  # fmt: skip
    finally:
        await _close(fleet, senders, target)


# -- fan-out ---------------------------------------------------------------------------


async def fan_out(opt: Options) -> dict[str, Any]:
    from aiohttp import ClientSession, ClientTimeout

    n, channel = opt.fanout_devices, "loadtest-all"
    target = await targets.pushgw(opt.admin_dsn, opt.redis_url, n, max(opt.shards, -(-n // 18_000)), channel=channel)
    fleet = None
    try:
        assert target.cluster is not None
        t0 = time.time()
        fleet = Fleet("pushgw", target.ports, target.devices, opt.procs, t0)
        await fleet.connect()
        t0 = time.time()
        await fleet.reset(t0)
        timeline = Timeline("fan-out", t0, fleet, [], target.server_pids, interval=0.5, roles=target.role_pids)
        timeline.start()
        body = b'{"channel":"%s","payload":{"aps":{"alert":"fan-out"},"t":%.6f}}' % (channel.encode(), time.time())
        t_post = time.time()
        async with ClientSession(timeout=ClientTimeout(total=900)) as http:
            async with http.post(
                f"http://127.0.0.1:{target.cluster.rest_port}/api/v1/send/topic", data=body,
                headers={"X-API-Key": target.cluster.api_key, "Content-Type": "application/json"},
            ) as resp:  # fmt: skip
                answer = await resp.json()
        t_answer = time.time()
        await _settle(fleet, answer.get("accepted", n), opt.grace)
        await timeline.stop()
        seen = await fleet.report(t0)
        per_device = seen["per_device"]
        last = (await fleet.stats())["last_at"]
        return {
            "scenario": "fan-out", "target": "pushgw",
            "params": {"devices": n, "shards": len(target.ports), "load_processes": len(fleet.swarms)},
            "figures": {
                "matched": answer.get("matched"), "accepted": answer.get("accepted"),
                "accept_seconds": round(t_answer - t_post, 3),
                "time_to_last_delivery_s": round(last - t_post, 3) if last else None,
                "latency_ms": seen["latency"].percentiles_ms(),
            },
            "accounting": {
                "accepted": answer.get("accepted", 0),
                "delivered_once": sum(1 for c in per_device if c == 1),
                "delivered_more_than_once": sum(1 for c in per_device if c > 1),
                "lost": sum(1 for c in per_device if c == 0),
            },
            "cpu": cpu_breakdown(timeline.samples, sum(per_device)),
            "series": {"timeline": timeline.samples, "latency": seen["latency"].series()},
        }  # fmt: skip
    finally:
        await _close(fleet, [], target)


# -- mixed -----------------------------------------------------------------------------


async def mixed(opt: Options) -> dict[str, Any]:
    n = opt.mixed_devices
    target = await targets.pushgw(opt.admin_dsn, opt.redis_url, n, max(2, opt.shards), worker=True)
    fleet, senders = None, []
    try:
        cluster = target.cluster
        assert cluster is not None
        t0 = time.time()
        fleet = Fleet("pushgw", target.ports, target.devices, opt.procs, t0, reconnect=True)
        await fleet.connect()
        senders = _senders(target, t0)
        await _warm_up(fleet, senders)
        t0 = time.time()
        await fleet.reset(t0)
        await asyncio.gather(*(s.call("reset", t0=t0) for s in senders))
        timeline = Timeline("mixed", t0, fleet, senders, target.server_pids, roles=target.role_pids)
        timeline.start()
        steps = [(opt.mixed_rate / len(senders), opt.mixed_seconds)]
        runs = asyncio.gather(*(s.call("run", steps=steps, timeout=opt.mixed_seconds + 120) for s in senders))
        await asyncio.sleep(opt.mixed_seconds / 3)
        t_kill = time.time()
        killed_port = cluster.ws_ports[0]
        cluster.kill_shard(0)
        timeline.note = "shard 0 killed"
        await asyncio.sleep(1.0)
        await cluster.start_shard(0)
        timeline.note = "shard 0 restarted"
        recovered = None
        while time.time() - t_kill < 120:
            if (await fleet.stats())["connected"] >= n:
                recovered = time.time() - t_kill
                break
            await asyncio.sleep(0.1)
        timeline.note = ""
        await runs
        accepted_total = await _accepted(senders)
        await _settle(fleet, accepted_total, max(opt.grace, 15.0))
        await timeline.stop()
        ledger, seen, extra = await _collect(fleet, senders, t0)
        return {
            "scenario": "mixed", "target": "pushgw",
            "params": {"devices": n, "rate": opt.mixed_rate, "seconds": opt.mixed_seconds, "shards": len(target.ports),
                       "killed": "shard 0 (SIGKILL), restarted after 1 s", "kill_at_s": round(t_kill - t0, 1)},
            "figures": {
                "recovery_s": round(recovered, 2) if recovered is not None else None,
                "reconnects": seen["reconnects"], "latency_ms": seen["latency"].percentiles_ms(),
                "rejected_reasons": extra["rejected_reasons"],
                # Each id that arrived more than once: [seconds after t0, shard port] per receipt.
                "duplicates": dict(list(seen["duplicates"].items())[:20]),
                "killed_port": killed_port,
            },
            "accounting": ledger.summary(),
            "cpu": cpu_breakdown(timeline.samples, sum(seen["counts"].values())),
            "series": {"timeline": timeline.samples, "latency": seen["latency"].series()},
        }  # fmt: skip
    finally:
        await _close(fleet, senders, target)
