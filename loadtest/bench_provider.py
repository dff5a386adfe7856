"""Provider API benchmark: durable accepted notifications per second.

    scripts/with-test-services.sh .venv/bin/python -m loadtest provider [--mode h2] [--procs 2] [-n 60000]

``--mode h2``: ``--procs`` API processes share one port (SO_REUSEPORT), each
with its own ``Core`` on a fresh PostgreSQL database (from TEST_PG_DSN) and
Redis; h2load (nghttp2-client) is the load generator in its own process,
over h2c with prior knowledge, one provider JWT for all connections.
The figure counts 200 answers and checks them against the rows committed.
``rest`` and ``batch`` are reserved for the REST API's modes.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from typing import Any

import asyncpg
import uvloop

TEAM, KID, BUNDLE = "BENCHTEAM1", "BENCHKEY01", "com.bench.app"
N_TOKENS = 2000  # spread over many tokens: one hot token measures per-token locking, not the API
TOKENS = [f"{i:064x}" for i in range(1, N_TOKENS + 1)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), in seconds.

    On a shared machine wall-clock throughput is noisy; CPU time per request
    of the API processes is what our code costs, whatever else runs."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cfg(dsn: str, redis: str, port: int) -> Any:
    from gateway.config import Config

    return Config(database_url=dsn, redis_url=redis, http2_port=port, h2_max_concurrent_streams=1000)


async def _seed(dsn: str, redis: str) -> str:
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from gateway.runtime import Core
    from schemas.notification import Environment

    core = await Core.open(_cfg(dsn, redis, 0))
    try:
        priv = ec.generate_private_key(ec.SECP256R1())
        pub = (
            priv.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )
        await core.store.create_team(TEAM, "bench")
        app = await core.store.create_app(TEAM, BUNDLE)
        await core.store.add_provider_key(TEAM, KID, pub)
        for token in TOKENS:
            await core.store.register_apns_token(app.app_id, token, BUNDLE, Environment.PRODUCTION)
        return jwt.encode({"iss": TEAM, "iat": int(time.time())}, priv, algorithm="ES256", headers={"kid": KID})
    finally:
        await core.close()


def _serve(dsn: str, redis: str, port: int, ready: Any, stop: Any) -> None:
    async def run() -> None:
        from gateway.runtime import Core
        from provider_api.h2_server import H2Listener

        cfg = _cfg(dsn, redis, port)
        core = await Core.open(cfg)
        listener = H2Listener(cfg, core, reuse_port=True)
        await listener.start()
        ready.set()
        # stop is a multiprocessing.Event: wait for it in a thread.
        await asyncio.to_thread(stop.wait)
        await listener.stop()
        await core.close()

    uvloop.run(run())


async def _count(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM notifications"))
    finally:
        await conn.close()


async def _create_db(admin: str) -> str:
    name = "bench_" + uuid.uuid4().hex[:12]
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return admin.rsplit("/", 1)[0] + "/" + name


def run_h2(args: argparse.Namespace) -> int:
    admin, redis = os.environ["TEST_PG_DSN"], os.environ["TEST_REDIS_URL"]
    if not shutil.which("h2load"):
        print("h2load not found: apt-get install -y nghttp2-client")
        return 2
    dsn = asyncio.run(_create_db(admin))
    token = asyncio.run(_seed(dsn, redis))
    port = _free_port()
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    procs, readies = [], []
    for _ in range(args.procs):
        ready = ctx.Event()
        p = ctx.Process(target=_serve, args=(dsn, redis, port, ready, stop))
        p.start()
        procs.append(p)
        readies.append(ready)
    try:
        for r in readies:
            if not r.wait(30):
                print("server did not start")
                return 1
        with (
            tempfile.NamedTemporaryFile("wb", suffix=".json") as body,
            tempfile.NamedTemporaryFile("w", suffix=".txt") as uris,
        ):
            body.write(b'{"aps":{"alert":"bench"}}')
            body.flush()
            uris.write("".join(f"http://127.0.0.1:{port}/3/device/{t}\n" for t in TOKENS))
            uris.flush()
            cmd = [
                "h2load", "-n", str(args.n), "-c", str(args.c), "-m", str(args.m), "-t", str(args.t),
                "-d", body.name,
                "-H", f"authorization: bearer {token}", "-H", f"apns-topic: {BUNDLE}",
                "-H", "apns-push-type: alert", "-i", uris.name,
            ]  # fmt: skip
            cpu0 = [cpu_seconds(p.pid) for p in procs if p.pid is not None]
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
            # Per process: both must have worked (SO_REUSEPORT spreads connections).
            per_proc = [cpu_seconds(p.pid) - c0 for p, c0 in zip(procs, cpu0, strict=True) if p.pid is not None]
            cpu = sum(per_proc)
        rps = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
        codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
        committed = asyncio.run(_count(dsn))
        print(out.strip().splitlines()[-8:] and "\n".join(out.strip().splitlines()[-9:]))
        if not rps or not codes:
            print("could not parse h2load output")
            return 1
        ok = int(codes.group(1))
        secs = float(rps.group(1)) / (1000 if rps.group(2) == "ms" else 1)
        print(
            f"\nmode=h2 procs={args.procs} c={args.c} m={args.m}: {ok} accepted (200) in {secs:.2f}s "
            f"= {ok / secs:,.0f} durable notifications/s; rows committed: {committed}; "
            f"API CPU {' + '.join(f'{c:.1f}' for c in per_proc)} s "
            f"= {1e6 * cpu / max(ok, 1):,.0f} us per accepted request "
            f"(load average {os.getloadavg()[0]:.1f})"
        )
        return 0 if committed >= ok else 1
    finally:
        stop.set()
        for p in procs:
            p.join(15)
            if p.is_alive():
                p.terminate()


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest provider")
    ap.add_argument("--mode", choices=["h2", "rest", "batch"], default="h2")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("-n", type=int, default=60_000)
    ap.add_argument("-c", type=int, default=8, help="h2 connections")
    ap.add_argument("-m", type=int, default=100, help="concurrent streams per connection")
    ap.add_argument("-t", type=int, default=1, help="h2load threads")
    args = ap.parse_args(argv)
    if args.mode != "h2":
        print(f"mode {args.mode} is not implemented yet (REST modes belong to the REST API)")
        return 2
    return run_h2(args)
