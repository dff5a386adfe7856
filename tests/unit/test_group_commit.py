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


async def test_submit_many_shares_lanes_and_answers_in_input_order() -> None:
    # A caller's batch is split by device over the lanes and merged with other
    # callers' rows; the answers still come back in the caller's order.
    batches: list[list[str]] = []

    async def flush(batch: Sequence[Notification]) -> list[AcceptResult]:
        batches.append([n.apns_id for n in batch])
        await asyncio.sleep(0.001)
        return [AcceptResult(apns_id=n.apns_id, id=int(n.apns_id.split("-")[1])) for n in batch]

    committer = GroupCommitter(flush, max_batch=100, flushers=3)

    def note(i: int) -> Notification:
        return Notification(
            apns_id=f"n-{i}", app_id=1, token="00" * 32, topic="t", payload=b"{}", device_id=f"dev{i % 7}"
        )

    first, second = await asyncio.gather(
        committer.submit_many([note(i) for i in range(50)]),
        committer.submit_many([note(i) for i in range(50, 80)]),
    )
    await committer.close()
    assert [r.id for r in first] == list(range(50)) and [r.id for r in second] == list(range(50, 80))
    assert len(batches) < 80 and committer.accepted == 80  # batched, not one transaction per row


async def test_submit_many_fails_when_a_lane_fails() -> None:
    async def flush(batch: Sequence[Notification]) -> list[AcceptResult]:
        if any(n.device_id == "bad" for n in batch):
            raise RuntimeError("lane down")
        return [AcceptResult(apns_id=n.apns_id, id=1) for n in batch]

    committer = GroupCommitter(flush, max_batch=10, flushers=2)
    notes = [
        Notification(apns_id=f"a{i}", app_id=1, token="00" * 32, topic="t", payload=b"{}", device_id=d)
        for i, d in enumerate(["ok", "bad", "ok"])
    ]
    try:
        await committer.submit_many(notes)
    except RuntimeError as exc:
        assert str(exc) == "lane down"
    else:
        raise AssertionError("a failed lane must fail the caller")
    finally:
        await committer.close()
