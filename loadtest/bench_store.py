"""`python -m loadtest store`: durable accepts/s through group commit.

64 concurrent producers call ``store.accept()`` in a loop for a few seconds;
every counted accept returned after its batch committed.  Prints the median
of 3 runs for PostgreSQL (``TEST_PG_DSN``, a fresh database) and SQLite.
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


async def _run_once(store: Any, app_id: int, pairs: list[tuple[str, str]], producers: int, seconds: float) -> float:
    done = [0] * producers  # one slot per producer: `+=` on a shared int across awaits loses updates
    stop = time.perf_counter() + seconds

    async def producer(i: int) -> None:
        k = i
        while time.perf_counter() < stop:
            token, device_id = pairs[k % len(pairs)]
            k += producers
            await store.accept(
                Notification(
                    apns_id=str(uuid.uuid4()), app_id=app_id, token=token, topic="t", payload=PAYLOAD,
                    device_id=device_id,
                )
            )  # fmt: skip
            done[i] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(producer(i) for i in range(producers)))
    return sum(done) / (time.perf_counter() - t0)


async def _bench(name: str, store: Any, args: argparse.Namespace) -> None:
    await store.open()
    try:
        app_id, pairs = await _setup(store, args.tokens)
        rates = []
        for run in range(args.runs):
            tx0 = store.committer.transactions
            n0 = store.committer.accepted
            rate = await _run_once(store, app_id, pairs, args.producers, args.seconds)
            txs = store.committer.transactions - tx0
            per_tx = (store.committer.accepted - n0) / max(txs, 1)
            print(f"  {name} run {run + 1}: {rate:,.0f} accepts/s ({txs} transactions, {per_tx:.0f}/tx)", flush=True)
            rates.append(rate)
        print(f"{name}: median {statistics.median(rates):,.0f} durable accepts/s "
              f"({args.producers} producers, {args.runs} runs x {args.seconds:g}s)", flush=True)  # fmt: skip
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
    parser.add_argument("--backends", default="postgres,sqlite")
    args = parser.parse_args(argv)
    args.backends = args.backends.split(",")
    return uvloop.run(_main(args))
