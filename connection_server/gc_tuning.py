"""Garbage-collector settings for a process that holds many device sessions.

A full collection walks every live object; with tens of thousands of
sessions it paused a shard for 600-880 ms and freed nothing (LIBRARIES.md).
Start-up objects are frozen out of the collector's view and the thresholds
raised so full collections stay rare; sessions are kept free of cycles, so
reference counting frees them.  Every entry point (``python -m
connection_server`` and every ``pushgw`` role: serve, provider-api,
connection-server, worker) calls this once it listens; for the API processes
the raised thresholds save the per-request collector work.
"""

from __future__ import annotations

import gc


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
