"""Latency recording with HDR histograms, whole-run and per second, mergeable across processes.

Values are microseconds (1 µs .. 10 min, 3 significant digits).  A load
process records into a ``Recorder``; ``export()`` gives encoded histograms
that the coordinator merges with ``merge()`` into one ``Recorder``.
"""

from __future__ import annotations

from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 600_000_000, 3
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def _clamp(us: int) -> int:
    return min(max(us, LOWEST_US), HIGHEST_US)


class Recorder:
    """One histogram for the whole run plus one per second since ``t0``."""

    def __init__(self, t0: float = 0.0) -> None:
        self.t0 = t0
        self.total = new_histogram()
        self.per_second: dict[int, HdrHistogram] = {}

    def record(self, now: float, latency_s: float) -> None:
        us = _clamp(int(latency_s * 1_000_000))
        self.total.record_value(us)
        sec = int(now - self.t0)
        h = self.per_second.get(sec)
        if h is None:
            h = self.per_second[sec] = new_histogram()
        h.record_value(us)

    def export(self) -> dict[str, Any]:
        return {
            "total": self.total.encode(),
            "per_second": {s: h.encode() for s, h in self.per_second.items()},
        }

    def merge(self, exported: dict[str, Any]) -> None:
        self.total.decode_and_add(exported["total"])
        for sec, blob in exported["per_second"].items():
            h = self.per_second.get(int(sec))
            if h is None:
                h = self.per_second[int(sec)] = new_histogram()
            h.decode_and_add(blob)

    def percentiles_ms(self, h: HdrHistogram | None = None) -> dict[str, float]:
        h = self.total if h is None else h
        out = {f"p{p:g}": h.get_value_at_percentile(p) / 1000 for p in PERCENTILES}
        out["max"] = h.get_max_value() / 1000
        out["count"] = h.get_total_count()
        return out

    def series(self) -> list[dict[str, float]]:
        """Per second: count (deliveries) and p50/p99 in ms."""
        return [
            {
                "t": sec,
                "count": h.get_total_count(),
                "p50": h.get_value_at_percentile(50) / 1000,
                "p99": h.get_value_at_percentile(99) / 1000,
            }
            for sec, h in sorted(self.per_second.items())
        ]
