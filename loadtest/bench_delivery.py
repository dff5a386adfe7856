"""`make bench-delivery`: N simulated devices on K shard processes, M notifications/s.

Runs inside scripts/with-test-services.sh (TEST_PG_DSN / TEST_REDIS_URL).  The
parent process is the provider (engine.accept -> commit -> route); the devices
live in several load processes, each bound to its own 127.0.0.x source
address.  Reports delivered/s, p50/p99 accept-to-receive latency (the ack
follows after the SDK's ack batching delay), lost count and shard RSS per idle
connection.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import msgspec

ROOT = Path(__file__).resolve().parents[1]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _load_proc(idx: int, urls: list[str], devices: list[tuple[str, str]], q: mp.Queue, stop: Any) -> None:
    import uvloop

    from connection_server.client import DeviceClient

    async def run() -> None:
        lat: list[float] = []
        seen: set[str] = set()

        def on_push(push) -> None:  # type: ignore[no-untyped-def]
            sent_at = msgspec.json.decode(push.payload)["t"]
            lat.append(time.time() - sent_at)
            seen.add(push.apns_id)

        src = f"127.0.0.{2 + idx}"
        clients = [
            DeviceClient(urls[i % len(urls)], d, s, on_push=on_push, ack_delay_s=0.002, local_addr=(src, 0))
            for i, (d, s) in enumerate(devices)
        ]
        for i, c in enumerate(clients):
            c.start()
            if i % 200 == 199:
                await asyncio.sleep(0.05)  # spread our own connect storm
        await asyncio.gather(*(c.wait_connected(120) for c in clients))
        q.put(("connected", idx))
        await asyncio.to_thread(stop.wait)
        q.put(("done", idx, lat, sorted(seen)))
        await asyncio.gather(*(c.stop() for c in clients))

    uvloop.run(run())


async def _provision(core, n: int):  # type: ignore[no-untyped-def]
    from connection_server.simulate import provision

    out = []
    for start in range(0, n, 500):
        batch = [provision(core.store, "com.bench.delivery", 1) for _ in range(min(500, n - start))]
        chunks = await asyncio.gather(*batch)
        out.extend(d for c in chunks for d in c)
    return out


async def bench(args: argparse.Namespace) -> int:
    from gateway.config import Config
    from gateway.runtime import Core
    from schemas.notification import Notification, TokenKind

    admin = os.environ["TEST_PG_DSN"]
    redis_url = os.environ["TEST_REDIS_URL"]
    db = "bench_" + uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{db}"')
    await conn.close()
    dsn = admin.rsplit("/", 1)[0] + "/" + db
    core = await Core.open(Config(database_url=dsn, redis_url=redis_url, shard_id="bench-provider"))
    await core.store.create_team("BENCHTEAM1", "bench")
    await core.store.create_app("BENCHTEAM1", "com.bench.delivery")
    t0 = time.time()
    devs = await _provision(core, args.devices)
    print(f"provisioned {len(devs)} devices in {time.time() - t0:.1f}s", flush=True)

    env = dict(os.environ, PUSHGW_DATABASE_URL=dsn, PUSHGW_REDIS_URL=redis_url, PUSHGW_LOG_LEVEL="warning")
    shards = [
        subprocess.Popen(  # noqa: ASYNC220 -- start-up, before any measurement
            [sys.executable, "-m", "connection_server", "--shard", str(i), "--ws-port", "0"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
        )
        for i in range(args.shards)
    ]  # fmt: skip
    procs: list[mp.Process] = []
    try:
        urls = []
        for p in shards:
            line = p.stdout.readline() if p.stdout else ""
            urls.append(f"ws://127.0.0.1:{int(line.rsplit('port=', 1)[1])}/v1/connect")
        rss0 = [_rss_kib(p.pid) for p in shards]
        ctx = mp.get_context("spawn")
        q: mp.Queue = ctx.Queue()
        stop = ctx.Event()
        per = [devs[i :: args.procs] for i in range(args.procs)]
        for i, slice_ in enumerate(per):
            pr = ctx.Process(target=_load_proc, args=(i, urls, [(d.device_id, d.secret) for d in slice_], q, stop))
            pr.start()
            procs.append(pr)
        for _ in procs:
            await asyncio.to_thread(q.get, True, 300)
        await asyncio.sleep(2)
        rss1 = [_rss_kib(p.pid) for p in shards]
        per_conn = (sum(rss1) - sum(rss0)) * 1.0 / len(devs)
        print(f"connected {len(devs)}; shard RSS {sum(rss0)} -> {sum(rss1)} KiB", flush=True)

        sent: list[str] = []
        accept_lat: list[float] = []
        t_start = time.time()
        tick = 0.01
        per_tick = max(1, int(args.rate * tick))
        pending: set[asyncio.Task[Any]] = set()

        async def accept_one(n: Notification) -> None:
            t = time.time()
            await core.engine.accept(n)
            accept_lat.append(time.time() - t)

        next_t = t_start
        while time.time() - t_start < args.duration:
            for _ in range(per_tick):
                d = random.choice(devs)
                aid = str(uuid.uuid4())
                body = b'{"aps":{"alert":"bench"},"t":%.6f}' % time.time()
                n = Notification(apns_id=aid, app_id=d.app_id, token=d.token, topic=d.topic, payload=body,
                                 device_id=d.device_id, kind=TokenKind.LOCAL)  # fmt: skip
                sent.append(aid)
                task = asyncio.create_task(accept_one(n))
                pending.add(task)
                task.add_done_callback(pending.discard)
            next_t += tick
            await asyncio.sleep(max(0.0, next_t - time.time()))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        elapsed = time.time() - t_start
        await asyncio.sleep(args.grace)
        stop.set()
        lat: list[float] = []
        got: set[str] = set()
        for _ in procs:
            msg = await asyncio.to_thread(q.get, True, 120)
            lat.extend(msg[2])
            got.update(msg[3])
        lat.sort()
        accept_lat.sort()

        def pct(xs: list[float], p: float) -> float:
            return xs[min(len(xs) - 1, int(len(xs) * p))] * 1000 if xs else float("nan")

        lost = len(set(sent) - got)
        print(f"devices={len(devs)} shards={args.shards} load_procs={args.procs} offered={args.rate}/s "
              f"for {elapsed:.1f}s", flush=True)  # fmt: skip
        print(f"sent={len(sent)} received={len(got)} lost={lost} delivered/s={len(got) / elapsed:.0f}")
        print(f"accept (commit) latency ms: p50={pct(accept_lat, 0.5):.1f} p99={pct(accept_lat, 0.99):.1f}")
        print(f"accept-to-receive latency ms: p50={pct(lat, 0.5):.1f} p99={pct(lat, 0.99):.1f} "
              f"max={pct(lat, 1.0):.1f}  (the ack follows within 2 ms)")  # fmt: skip
        print(f"shard RSS per idle connection: {per_conn:.1f} KiB")
        return 0 if lost == 0 else 1
    finally:
        for pr in procs:
            pr.join(10)
            if pr.is_alive():
                pr.kill()
        for p in shards:
            p.terminate()
            p.wait(15)
        await core.close()
        conn = await asyncpg.connect(admin)
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await conn.close()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest delivery")
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--rate", type=int, default=10_000, help="notifications/s")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--shards", type=int, default=2)
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--grace", type=float, default=5.0)
    return asyncio.run(bench(p.parse_args(argv)))
