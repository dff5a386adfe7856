"""A fleet: the load processes holding one target's devices, and the merged view of what they saw."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from loadtest.harness.latency import Recorder
from loadtest.harness.rpc import Remote
from loadtest.harness.swarm import DeviceSwarm

PER_PROCESS_MAX = 18_000  # a process may hold 20,000 open files here


class Fleet:
    def __init__(self, kind: str, ports: list[int], devices: list[tuple[str, str]], procs: int, t0: float,
                 reconnect: bool = False, drop_first: int = 0, duplicate_first: int = 0) -> None:  # fmt: skip
        procs = max(procs, -(-len(devices) // PER_PROCESS_MAX), 1)
        procs = min(procs, max(1, len(devices)))
        self.n = len(devices)
        self.slices = [list(range(i, len(devices), procs)) for i in range(procs)]
        self.swarms = [
            Remote(
                DeviceSwarm,
                kind=kind,
                ports=ports,
                devices=[devices[j] for j in idx],
                source=f"127.0.0.{10 + i}",
                t0=t0,
                reconnect=reconnect,
                drop_first=drop_first if i == 0 else 0,
                duplicate_first=duplicate_first if i == procs - 1 else 0,
            )
            for i, idx in enumerate(self.slices)
        ]

    async def _all(self, name: str, timeout: float | None = None, **kw: Any) -> list[Any]:
        return list(await asyncio.gather(*(s.call(name, timeout=timeout, **kw) for s in self.swarms)))

    async def connect(self, rate: float = 0.0, timeout: float = 600.0) -> dict[str, Any]:
        t = time.time()
        per = rate / len(self.swarms) if rate else 0.0
        out = await self._all("connect", timeout=timeout, rate=per)
        failed: Counter[str] = Counter()
        for r in out:
            failed.update(r["failed"])
        return {"connected": sum(r["connected"] for r in out), "failed": dict(failed), "seconds": time.time() - t}

    async def disconnect(self) -> None:
        await self._all("disconnect", timeout=120)

    async def stats(self) -> dict[str, Any]:
        out = await self._all("stats", timeout=30)
        return {
            "connected": sum(r["connected"] for r in out),
            "received": sum(r["received"] for r in out),
            "reconnects": sum(r["reconnects"] for r in out),
            "last_at": max(r["last_at"] for r in out),
        }

    async def reset(self, t0: float) -> None:
        await self._all("reset", timeout=30, t0=t0)

    async def report(self, t0: float) -> dict[str, Any]:
        """Merged counts per message id, receipts per device (in original order), latency."""
        counts: Counter[str] = Counter()
        per_device = [0] * self.n
        latency = Recorder(t0)
        close_codes: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        reconnects = 0
        duplicates: dict[str, list[Any]] = {}
        for idx, r in zip(self.slices, await self._all("report", timeout=120), strict=True):
            duplicates.update(r.get("duplicates", {}))
            counts.update(r["counts"])
            for j, c in zip(idx, r["per_device"], strict=True):
                per_device[j] = c
            latency.merge(r["latency"])
            close_codes.update({str(k): v for k, v in r["close_codes"].items()})
            failures.update(r["failures"])
            reconnects += r["reconnects"]
        return {"counts": counts, "per_device": per_device, "latency": latency, "close_codes": dict(close_codes),
                "failures": dict(failures), "reconnects": reconnects, "duplicates": duplicates}  # fmt: skip

    def pids(self) -> list[int]:
        return [s.process.pid for s in self.swarms if s.process.pid is not None]

    async def close(self) -> None:
        await asyncio.gather(*(s.close() for s in self.swarms))
