"""The load-test harness end to end at tiny sizes: real shards, API, PostgreSQL, Redis and Mosquitto.

These check the harness's bookkeeping, not performance: a push the device
acks without counting must be reported lost, a push it leaves unacked (and
gets again after reconnecting) must be reported delivered twice, and the
JSON and HTML results must hold the series the plots are drawn from.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtest.harness.fleet import Fleet
from loadtest.harness.ledger import Ledger
from loadtest.harness.rpc import Remote
from loadtest.harness.senders import Sender
from loadtest.harness.targets import mosquitto

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.usefixtures("redis_url")
def test_harness_reports_an_injected_loss_and_duplicate_and_writes_its_report(tmp_path: Path) -> None:
    assert os.environ.get("TEST_PG_DSN"), "run with make test"
    out = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "loadtest", "harness", "--size", "tiny", "--scenarios", "online", "--no-mosquitto",
         "--steps", "40", "--step-seconds", "2", "--grace", "3", "--inject-drop", "1", "--inject-duplicate", "1",
         "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr  # a lost push fails the run
    doc = json.loads((out / "latest.json").read_text())
    (result,) = doc["results"]
    assert "error" not in result, result
    acct = result["accounting"]
    assert acct["lost"] == 1
    # the injected push, plus any that were in flight when the socket dropped (at least once)
    assert acct["delivered_more_than_once"] >= 1
    assert acct["delivered_once"] + acct["delivered_more_than_once"] + acct["lost"] == acct["accepted"]
    assert acct["accepted"] > 20
    # where the CPU went, by role, the load generator's own processes included
    cpu = result["cpu"]
    assert {"shards", "api", "postgres", "redis", "load: devices", "load: senders"} <= set(cpu["cpu_s"])
    # (a tiny run: a single role may stay below one clock tick, 10 ms, so only the total must show)
    assert sum(cpu["cpu_s"].values()) > 0 and set(cpu["cpu_us_per_message"]) == set(cpu["cpu_s"])
    assert cpu["messages"] >= acct["accepted"]
    timeline = result["series"]["timeline"]
    assert timeline and all("connected" in s and "server_rss_kib" in s for s in timeline)
    # every arrival is in the latency series except the dropped one
    assert sum(s["count"] for s in result["series"]["latency"]) > acct["accepted"] - 1
    page = (out / "latest.html").read_text()
    assert page.count("<svg") >= 4 and "http" not in page.split("<body>", 1)[1].replace("http://www.w3.org", "")


async def test_mqtt_load_client_accounts_every_message_through_mosquitto() -> None:
    target = await mosquitto(8, publishers=1)
    fleet = senders = None
    try:
        t0 = time.time()
        fleet = Fleet("mqtt", target.ports, target.devices, 2, t0)
        assert (await fleet.connect())["connected"] == 8
        await fleet.disconnect()  # persistent sessions: messages wait for the devices
        senders = [Remote(Sender, targets=target.addresses, t0=t0, **spec) for spec in target.sender_specs]
        owed = [a for a in target.addresses for _ in range(3)]
        await senders[0].call("run", steps=[], targets=owed, timeout=60)
        await fleet.connect()
        for _ in range(100):
            if (await fleet.stats())["received"] >= len(owed):
                break
            await asyncio.sleep(0.05)
        ledger = Ledger()
        ledger.add_accepted((await senders[0].call("report"))["accepted_ids"])
        ledger.add_received((await fleet.report(t0))["counts"])
        summary = ledger.summary()
        assert summary["accepted"] == 24
        assert summary["lost"] == 0
        assert summary["delivered_once"] + summary["delivered_more_than_once"] == 24
    finally:
        for s in senders or []:
            await s.close()
        if fleet is not None:
            await fleet.close()
        await target.stop()
