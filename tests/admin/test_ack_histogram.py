"""Accept-to-ack latency is a Prometheus histogram fed from the store by the worker."""

from __future__ import annotations

import asyncio
import random

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gateway.admin_exporter import ACK_BUCKETS, StatsExporter, add_grouped
from gateway.admin_rollup import LAG_MS
from tests.admin.support import Rig, eventually
from tests.admin.test_stats_scale import _age


def _histogram() -> tuple[Histogram, CollectorRegistry]:
    registry = CollectorRegistry()
    return Histogram("t_ack_seconds", "test", buckets=ACK_BUCKETS, registry=registry), registry


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("t_ack_seconds") and "_created" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_grouped_observations_expose_exactly_what_single_observations_do() -> None:
    rng = random.Random(7)
    values = [rng.choice((0, 0.005, 0.0051, 1, 59.9, 60, 86400, 10**6)) for _ in range(500)]
    values += [rng.expovariate(1 / 30) for _ in range(500)]
    single, single_reg = _histogram()
    for v in values:
        single.observe(v)
    grouped, grouped_reg = _histogram()
    counts: dict[float, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    add_grouped(grouped, list(counts.items()))
    a, b = _samples(single_reg), _samples(grouped_reg)
    assert a.keys() == b.keys() and len(a) == len(ACK_BUCKETS) + 3  # buckets, +Inf, count, sum
    for name in a:
        assert abs(a[name] - b[name]) < 1e-6 * max(1.0, abs(a[name])), name


async def test_every_ack_lands_in_the_histogram_once(rig: Rig) -> None:
    hist, registry = _histogram()
    exporter = StatsExporter(rig.proc.core, ack_histogram=hist)
    assert await exporter.export_acks() == 0  # the first look only marks where counting starts
    _device, token, _client = await rig.new_device()
    fast = [await rig.send(token, f"fast {i}") for i in range(3)]
    slow = await rig.send(token, "slow")

    async def acked() -> bool:
        states = [await rig.rest("GET", f"/api/v1/notifications/{i}") for i in (*fast, slow)]
        return all(s["status"] == "delivered" for s in states)

    await eventually(acked, what="4 acks")
    await _age(rig, [slow], 42_000, acks_too=False)  # accepted 42 s before its ack
    await asyncio.sleep(LAG_MS / 1000 + 0.1)
    assert await exporter.export_acks() == 4
    assert await exporter.export_acks() == 0  # counted once
    s = _samples(registry)
    assert s["t_ack_seconds_count"] == 4
    assert s['t_ack_seconds_bucket{le="30.0"}'] == 3  # the fast ones
    assert s['t_ack_seconds_bucket{le="60.0"}'] == 4  # and the one that waited 42 s
    assert 42 <= s["t_ack_seconds_sum"] < 60
