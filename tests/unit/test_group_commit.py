"""Group commit lanes: one device's notifications stay in one flusher, in order."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from gateway.store.group_commit import GroupCommitter, timeline
from schemas.notification import AcceptResult, Notification, Status


async def test_one_device_is_never_in_two_batches_at_once_and_keeps_its_order() -> None:
    # The flush stands in for a transaction that assigns ids when it commits;
    # flushes of different lanes overlap and take random times, so a device
    # whose rows were spread over lanes would see its ids out of order.
    rng = random.Random(7)
    next_id = 0
    in_flight: list[set[str]] = []
    max_in_flight = 0

    async def flush(batch: Sequence[Notification]) -> list[AcceptResult]:
        nonlocal next_id, max_in_flight
        devices = {n.device_id or "" for n in batch}
        assert all(not (devices & other) for other in in_flight), "a device in two batches at once"
        in_flight.append(devices)
        max_in_flight = max(max_in_flight, len(in_flight))
        await asyncio.sleep(rng.uniform(0, 0.01))
        in_flight.remove(devices)
        out = []
        for n in batch:
            next_id += 1
            out.append(AcceptResult(apns_id=n.apns_id, id=next_id))
        return out

    committer = GroupCommitter(flush, max_batch=5, flushers=4)

    def note(device: str, i: int) -> Notification:
        return Notification(
            apns_id=f"{device}-{i}", app_id=1, token="00" * 32, topic="t", payload=b"{}", device_id=device
        )

    devices = [f"dev{d}" for d in range(12)]
    results = await asyncio.gather(*(committer.submit(note(d, i)) for i in range(20) for d in devices))
    await committer.close()
    assert max_in_flight > 1, "lanes should flush concurrently"
    for d in devices:
        ids = [r.id for r in results if r.apns_id.startswith(d + "-")]
        assert len(ids) == 20 and ids == sorted(ids)
    assert committer.accepted == 240


@pytest.mark.parametrize("status", list(Status), ids=[s.value for s in Status])
def test_every_status_reads_back_as_a_timeline(status: Status) -> None:
    # A row in any status (digested ones included) must give a timeline, not a KeyError.
    events = timeline(status, 1, 2, 3)
    assert [e.event for e in events][:2] == ["accepted", "sent"]
    if status.terminal:
        assert events[-1].at_ms == 3 and events[-1].event not in ("accepted", "sent")
    else:
        assert len(events) == 2
