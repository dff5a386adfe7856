"""`python -m loadtest store`: durable accepts/s into the store.

64 concurrent producers accept notifications for a few seconds; every
counted notification was returned after its transaction committed (fsync on,
synchronous_commit on).  Prints the median of 3 runs for PostgreSQL
(``TEST_PG_DSN``, a fresh database) and SQLite, in three labelled shapes:

* ``window=1``: each producer awaits one ``accept()`` at a time (a client
  doing one request at a time).  Group commit batches at most ``producers``
  rows, so the commit latency (an fsync) bounds the rate.
* ``window=W`` (``--window``, default 32): each producer keeps W single
  ``accept()`` calls in flight, like an HTTP/2 connection with many streams.
* ``batch=B`` (``--batch``, default 100): each producer calls
  ``accept_many()`` with B notifications at a time, like the REST batch
  endpoint; batches go through group commit too (shared transactions).

``--ceiling`` drops every secondary index of ``notifications`` first (the
primary key and the (app, apns-id) uniqueness stay): an upper bound for the
write path, not a usable store (nothing could be drained or expired).

The collector is tuned as in ``pushgw serve`` (``connection_server/gc_tuning.py``:
start-up objects frozen, thresholds raised) unless ``--no-gc-tuning``.

Next to the rate it prints the CPU spent per accepted notification, by this
Python process and (PostgreSQL) by all server processes together: on a
shared machine the rate is noisy, the CPU cost per row much less so.
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

from connection_server.gc_tuning import tune_gc
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from provider_api.submit import new_apns_id
from schemas.notification import Environment, Notification

PAYLOAD = b'{"aps":{"alert":{"title":"Hello","body":"A benchmark notification of typical size"},"sound":"default"}}'
_HZ = os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float | None:
    """CPU seconds of the test PostgreSQL (postmaster and its children), if readable."""
    data = os.environ.get("TEST_PG_DATA")
    try:
        with open(os.path.join(data or "", "postmaster.pid")) as f:
            postmaster = int(f.readline())
    except (OSError, ValueError):
        return None
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(pid) == postmaster or int(fields[1]) == postmaster:
            total += int(fields[11]) + int(fields[12])
    return total / _HZ


async def _setup(store: Any, tokens: int) -> tuple[int, list[tuple[str, str]]]:
    await store.create_team("BENCH00001", "bench")
    app = await store.create_app("BENCH00001", f"com.bench.{uuid.uuid4().hex[:8]}")
    pairs = []
    for _ in range(tokens):
        device, _ = await store.create_device(app.app_id)
        tok = await store.issue_token(device.device_id, app.bundle_id, Environment.PRODUCTION)
        pairs.append((tok.token, device.device_id))
    return app.app_id, pairs


def _note(app_id: int, pair: tuple[str, str]) -> Notification:
    # new_apns_id, as the REST API generates them: str(uuid.uuid4()) was ~30 % of this
    # process's CPU, load generation that no provider request costs the store.
    return Notification(
        apns_id=new_apns_id(), app_id=app_id, token=pair[0], topic="t", payload=PAYLOAD, device_id=pair[1]
    )


async def _run_once(store: Any, app_id: int, pairs: list[tuple[str, str]], args: Any, shape: tuple[str, int]) -> int:
    kind, size = shape
    lanes = args.producers * size if kind == "window" else args.producers
    done = [0] * lanes  # one slot per lane: `+=` on a shared int across awaits loses updates
    stop = time.perf_counter() + args.seconds

    async def single(i: int) -> None:
        # producer i // size, stream i % size: each lane awaits one accept at a time
        k = i
        while time.perf_counter() < stop:
            await store.accept(_note(app_id, pairs[k % len(pairs)]))
            k += lanes
            done[i] += 1

    async def batches(i: int) -> None:
        k = i * size
        while time.perf_counter() < stop:
            notes = [_note(app_id, pairs[(k + j) % len(pairs)]) for j in range(size)]
            k += lanes * size
            await store.accept_many(notes)
            done[i] += size

    await asyncio.gather(*((single if kind == "window" else batches)(i) for i in range(lanes)))
    return sum(done)


async def _drop_secondary_indexes(store: Any) -> list[str]:
    """The ``--ceiling`` variant: leave ``notifications`` with its primary key and
    its (app, apns-id) uniqueness only (what idempotent accepts cannot do without)."""
    async with store._conn() as conn:
        names = [
            r["indexname"]
            for r in await conn.fetch(
                # Indexes that back no constraint: all but the primary key and UNIQUE (app_id, apns_id).
                "SELECT indexrelid::regclass::text AS indexname FROM pg_index"
                " WHERE indrelid = 'notifications'::regclass"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = pg_index.indexrelid)"
            )
        ]
        for name in names:
            await conn.execute(f'DROP INDEX "{name}"')
    return sorted(names)


async def _bench(name: str, store: Any, args: argparse.Namespace) -> None:
    await store.open()
    try:
        app_id, pairs = await _setup(store, args.tokens)
        if args.ceiling and name == "postgres":
            dropped = await _drop_secondary_indexes(store)
            name = "postgres-ceiling"
            print(f"{name}: NOT a usable store (drains, expiry, route repair need them): dropped {', '.join(dropped)}")
        if args.gc_tuning:
            tune_gc()  # as `pushgw serve` does once it listens: ~6 us per accept less (see BENCHMARKS.md)
        print(f"{name}: collector {'tuned as in pushgw serve' if args.gc_tuning else 'CPython defaults'}", flush=True)
        for shape in args.shapes:
            label = f"{name} {shape[0]}={shape[1]}"
            rates = []
            for run in range(args.runs):
                tx0, n0 = store.committer.transactions, store.committer.accepted
                server0, py0, t0 = postgres_cpu_seconds(), time.process_time(), time.perf_counter()
                count = await _run_once(store, app_id, pairs, args, shape)
                wall = time.perf_counter() - t0
                py_us = (time.process_time() - py0) / count * 1e6
                server1 = postgres_cpu_seconds()
                server_us = ""
                if server0 is not None and server1 is not None:
                    server_us = f", server {(server1 - server0) / count * 1e6:.1f}"
                txs = store.committer.transactions - tx0
                per_tx = (store.committer.accepted - n0) / max(txs, 1)
                batching = f"{txs} group commits, {per_tx:.0f}/tx"
                rate = count / wall
                print(f"  {label} run {run + 1}: {rate:,.0f} accepts/s ({batching}; CPU us/accept: "
                      f"python {py_us:.1f}{server_us})", flush=True)  # fmt: skip
                rates.append(rate)
            what = f"{shape[1]} accept() in flight each" if shape[0] == "window" else f"accept_many of {shape[1]}"
            print(f"{label}: median {statistics.median(rates):,.0f} durable accepts/s ({args.producers} producers, "
                  f"{what}, {args.runs} runs x {args.seconds:g}s)", flush=True)  # fmt: skip
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
            store = PostgresStore(
                admin.rpartition("/")[0] + "/" + db,
                group_commit_flushers=args.flushers,
                group_commit_max=args.group_commit_max,
            )
            await _bench("postgres", store, args)
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
    parser.add_argument(
        "--window", type=int, default=32, help="accept() calls in flight per producer (0: skip this and window=1)"
    )
    parser.add_argument("--batch", type=int, default=100, help="notifications per accept_many() call (0: skip)")
    parser.add_argument("--flushers", type=int, default=2, help="PostgreSQL group-commit flushers")
    parser.add_argument(
        "--group-commit-max", type=int, default=2000, help="PostgreSQL: notifications per accept transaction"
    )
    parser.add_argument("--backends", default="postgres,sqlite")
    parser.add_argument(
        "--no-gc-tuning", dest="gc_tuning", action="store_false", help="keep CPython's default collector thresholds"
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="PostgreSQL without the secondary indexes of notifications: an upper bound, not a usable store",
    )
    args = parser.parse_args(argv)
    args.backends = args.backends.split(",")
    args.shapes = [("window", 1)] if args.window > 0 else []
    if args.window > 1:
        args.shapes.append(("window", args.window))
    if args.batch > 0:
        args.shapes.append(("batch", args.batch))
    return uvloop.run(_main(args))
