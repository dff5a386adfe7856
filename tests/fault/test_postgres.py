"""Fault 4: PostgreSQL restarted while pushes flow.

During the outage every request is answered 503 and nothing of it is ever
delivered; afterwards every request answered 200 is delivered.
"""

from __future__ import annotations

import asyncio
import time

from tests.fault.sizes import size
from tests.fault.support import Cluster, Ledger, Sender, ensure_services, eventually, pg_start, pg_stop, report, settle

DEVICES = size("postgres_devices", 8)
DOWN_S = 3.0


async def test_postgres_restart_503_then_everything_delivered(cluster: Cluster) -> None:
    devs = await cluster.add_devices(DEVICES)
    ledger = Ledger()
    sender = Sender(cluster, ledger, devs, concurrency=3, pause_s=0.02)
    sender.start()
    try:
        await asyncio.sleep(1.0)
        await pg_stop()
        t_down = time.monotonic()
        await asyncio.sleep(DOWN_S)
        t_up = time.monotonic()
        await pg_start()
        n_before = len([e for e in sender.log if e[2] == 200])
        recovery = await eventually(lambda: len([e for e in sender.log if e[2] == 200]) > n_before, 30,
                                    "a 200 after the restart")  # fmt: skip
        await asyncio.sleep(1.0)
    finally:
        await sender.stop()
        await ensure_services()
    # Requests wholly inside the outage: all 503, none accepted, none ever delivered.
    inside = [e for e in sender.log if e[0] > t_down + 0.2 and e[1] < t_up]
    assert inside, "no request fell inside the outage"
    assert {e[2] for e in inside} == {503}, sorted({str(e[2]) for e in inside})
    await eventually(lambda: cluster.all_connected(), 20, "devices connected again")
    tallies = await settle(cluster, ledger)
    got = ledger.received(devs)
    report("postgres-restart", tallies, down_s=DOWN_S, answered_503=ledger.refused.get(503, 0),
           first_200_after_start_s=round(recovery, 2))  # fmt: skip
    assert not ledger.unanswered
    assert set(ledger.refused) <= {503}, f"refusals other than 503 (a 500 was seen at scale 4): {ledger.refused}"
    assert not (ledger.refused_ids & set(got)), "a request answered 503 was delivered"
    assert tallies["lost"] == [], f"accepted, never delivered (store status {tallies['lost_store_status']})"
    assert tallies["app_duplicates"] == 0
    assert tallies["not_delivered_in_store"] == []
