"""Readiness checks run side by side, each bounded (gateway/admin_shards.py)."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from gateway import admin_shards


async def _hang() -> None:
    await asyncio.sleep(30)


async def _fine() -> None:
    return None


async def test_two_hanging_checks_answer_within_one_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admin_shards, "CHECK_TIMEOUT_S", 0.5)
    core = SimpleNamespace(store=SimpleNamespace(ping=_hang), bus=SimpleNamespace(ping=_hang))
    t0 = time.monotonic()
    checks = await admin_shards.probe_ready(core)
    elapsed = time.monotonic() - t0
    assert checks == {"store": "unavailable: TimeoutError", "redis": "unavailable: TimeoutError"}
    assert elapsed < 0.9  # one after the other would take 1.0 s


async def test_each_check_reports_its_own_state() -> None:
    async def broken() -> None:
        raise ConnectionRefusedError

    core = SimpleNamespace(store=SimpleNamespace(ping=_fine), bus=SimpleNamespace(ping=broken))
    assert await admin_shards.probe_ready(core) == {"store": "ok", "redis": "unavailable: ConnectionRefusedError"}
    embedded = SimpleNamespace(store=SimpleNamespace(ping=_fine), bus=SimpleNamespace())
    assert await admin_shards.probe_ready(embedded) == {"store": "ok"}
