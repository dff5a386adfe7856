"""`python -m loadtest store`: durable accepts/s through group commit.

64 concurrent producers call ``store.accept()`` in a loop for a few seconds;
every counted accept returned after its batch committed.  Prints the median
of 3 runs for PostgreSQL (``TEST_PG_DSN``, a fresh database) and SQLite, in
two shapes, each labelled:

* ``window=1``: each producer awaits one accept at a time (a client doing
  one request at a time).  Batches are at most ``producers`` rows, so the
  commit latency (an fsync) bounds the rate.
* ``window=W`` (``--window``, default 32): each producer keeps up to W
  accepts in flight, like an HTTP/2 connection with many streams; batches
  grow up to the store's group-commit maximum.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from typing import Any

import asyncpg
import uvloop

from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from schemas.notification import Environment, Notification

PAYLOAD = b'{"aps":{"alert":{"title":"Hello","body":"A benchmark notification of typical size"},"sound":"default"}}'


async def _setup(store: Any, tokens: int) -> tuple[int, list[tuple[str, str]]]:
    await store.create_team("BENCH00001", "bench")
    app = await store.create_app("BENCH00001", f"com.bench.{uuid.uuid4().hex[:8]}")
    pairs = []
    for _ in range(tokens):
        device, _ = await store.create_device(app.app_id)
        tok = await store.issue_token(device.device_id, app.bundle_id, Environment.PRODUCTION)
        pairs.append((tok.token, device.device_id))
    return app.app_id, pairs


async def _run_once(
    store: Any, app_id: int, pairs: list[tuple[str, str]], producers: int, seconds: float, window: int
) -> float:
    lanes = producers * window
    done = [0] * lanes  # one slot per lane: `+=` on a shared int across awaits loses updates
    stop = time.perf_counter() + seconds

    async def lane(i: int) -> None:
        # producer i // window, stream i % window: each lane awaits one accept at a time
        k = i
        while time.perf_counter() < stop:
            token, device_id = pairs[k % len(pairs)]
            k += lanes
            await store.accept(
                Notification(
                    apns_id=str(uuid.uuid4()), app_id=app_id, token=token, topic="t", payload=PAYLOAD,
                    device_id=device_id,
                )
            )  # fmt: skip
            done[i] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(lane(i) for i in range(lanes)))
    return sum(done) / (time.perf_counter() - t0)


async def _bench(name: str, store: Any, args: argparse.Namespace) -> None:
    await store.open()
    try:
        app_id, pairs = await _setup(store, args.tokens)
        for window in args.windows:
            label = f"{name} window={window}"
            rates = []
            for run in range(args.runs):
                tx0 = store.committer.transactions
                n0 = store.committer.accepted
                t0 = time.perf_counter()
                rate = await _run_once(store, app_id, pairs, args.producers, args.seconds, window)
                txs = store.committer.transactions - tx0
                per_tx = (store.committer.accepted - n0) / max(txs, 1)
                ms_tx = (time.perf_counter() - t0) * 1000 / max(txs, 1)
                print(f"  {label} run {run + 1}: {rate:,.0f} accepts/s "
                      f"({txs} transactions, {per_tx:.0f}/tx, {ms_tx:.1f} ms/tx)", flush=True)  # fmt: skip
                rates.append(rate)
            print(f"{label}: median {statistics.median(rates):,.0f} durable accepts/s ({args.producers} producers x "
                  f"{window} in flight each, {args.runs} runs x {args.seconds:g}s)", flush=True)  # fmt: skip
    finally:
        await store.close()


async def _main(args: argparse.Namespace) -> int:
    if "postgres" in args.backends:
        admin = os.environ.get("TEST_PG_DSN")
        if not admin:
            print("TEST_PG_DSN is not set: run via scripts/with-test-services.sh (make bench-store)")
            return 2
        db = "bench_" + uuid.uuid4().hex[:12]
        conn = await asyncpg.connect(admin)
        await conn.execute(f'CREATE DATABASE "{db}"')
        await conn.close()
        try:
            await _bench("postgres", PostgresStore(admin.rpartition("/")[0] + "/" + db), args)
        finally:
            conn = await asyncpg.connect(admin)
            await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            await conn.close()
    if "sqlite" in args.backends:
        with tempfile.TemporaryDirectory(prefix="pushgw-bench-") as tmp:
            await _bench("sqlite", SqliteStore(os.path.join(tmp, "bench.sqlite3")), args)
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest store")
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--window", type=int, default=32, help="accepts in flight per producer (second shape)")
    parser.add_argument("--backends", default="postgres,sqlite")
    args = parser.parse_args(argv)
    args.backends = args.backends.split(",")
    args.windows = [1] if args.window <= 1 else [1, args.window]
    return uvloop.run(_main(args))
