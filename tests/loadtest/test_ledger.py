"""The harness's accounting arithmetic: every accepted id is delivered once, more than once, or lost."""

from __future__ import annotations

from loadtest.harness.latency import Recorder
from loadtest.harness.ledger import Ledger


def test_each_accepted_id_lands_in_exactly_one_bucket() -> None:
    ledger = Ledger()
    ledger.add_accepted(["a", "b", "c", "d"])
    ledger.add_received({"a": 1, "b": 2})
    ledger.add_received({"b": 1, "x": 1})
    assert ledger.summary() == {
        "accepted": 4,
        "rejected": 0,
        "delivered_once": 1,
        "delivered_more_than_once": 1,
        "lost": 2,
        "unexpected": 1,
    }


def test_latency_histograms_merge_across_processes() -> None:
    one, two, merged = Recorder(100.0), Recorder(100.0), Recorder(100.0)
    for _ in range(100):
        one.record(100.5, 0.001)  # 1 ms in second 0
        two.record(101.5, 0.100)  # 100 ms in second 1
    merged.merge(one.export())
    merged.merge(two.export())
    pct = merged.percentiles_ms()
    assert pct["count"] == 200
    assert 0.9 < pct["p50"] < 1.1
    assert 99 < pct["p99"] < 101
    assert [(s["t"], s["count"]) for s in merged.series()] == [(0, 100), (1, 100)]
