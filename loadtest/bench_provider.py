"""Provider API benchmark (HTTP/2): durable accepted notifications per second.

    scripts/with-test-services.sh .venv/bin/python -m loadtest provider [--procs 2] [-n 60000] [--cold 20000]

``--procs`` API processes share one port (SO_REUSEPORT), each with its own
``Core`` on a fresh PostgreSQL database (from TEST_PG_DSN) and Redis.  The
load generator is h2load (nghttp2-client, C) over h2c with prior knowledge,
one provider JWT for every connection.  Two runs, one after the other:

* **hot**: ``-n`` requests over ``--hot-tokens`` tokens, so after the first
  pass every token is in the API's token cache (a provider pushing to the
  same devices again and again);
* **cold**: ``--cold`` requests, each to a different pre-registered token,
  so every request is a token-cache miss (real traffic spread over many
  devices, as in the load-test harness).

Connections: ``-c`` h2load instances with one connection each, every
instance with its own list of tokens.  h2load starts each of its clients at
the first URI of its list, so one instance with many clients would send the
same token from every client at once (shared reads, not misses); and with
only a few connections SO_REUSEPORT's hash spreads them badly, so the
default is 64 connections x 16 streams.  Each run prints every API process's
CPU seconds (so an uneven spread shows) and the API CPU per accepted request,
the load generator's CPU, PostgreSQL's CPU, and the load average.  200 answers
are checked against the rows committed in PostgreSQL.

``--no-store`` measures a ceiling: the accept answers at once, nothing is
stored (the same switch exists for ``python -m loadtest rest``).
``--no-gc-tuning`` keeps CPython's collector thresholds (every pushgw process
tunes them once started).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import uvloop

from loadtest.bench_store import postgres_cpu_seconds

TEAM, KID, BUNDLE = "BENCHTEAM1", "BENCHKEY01", "com.bench.app"
BODY = b'{"aps":{"alert":"bench"}}'


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), in seconds.

    On a shared machine wall-clock throughput is noisy; CPU time per request
    of the API processes is what our code costs, whatever else runs."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU time of the child processes reaped so far (the h2load instances)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cfg(dsn: str, redis: str, port: int) -> Any:
    from gateway.config import Config

    return Config(database_url=dsn, redis_url=redis, http2_port=port, h2_max_concurrent_streams=1000)


def token_list(prefix: int, count: int) -> list[str]:
    """``count`` distinct 32-byte tokens; ``prefix`` keeps the sets of the runs apart."""
    return [f"{prefix:08x}{i:056x}" for i in range(count)]


async def _seed(dsn: str, redis: str, tokens: list[str]) -> str:
    """Team, app, provider key, ``tokens`` registered; returns a provider JWT."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from gateway.runtime import Core
    from gateway.store.postgres import Q
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
    finally:
        await core.close()
    # The store's own registration statement, pipelined: 30,000 tokens in seconds.
    conn = await asyncpg.connect(dsn)
    try:
        now = int(time.time() * 1000)
        rows = [(t, app.app_id, BUNDLE, Environment.PRODUCTION.value, None, now) for t in tokens]
        await conn.executemany(Q["register_apns_token"], rows)
    finally:
        await conn.close()
    return str(jwt.encode({"iss": TEAM, "iat": int(time.time())}, priv, algorithm="ES256", headers={"kid": KID}))


def answer_without_store(core: Any) -> None:
    """``--no-store``: the engine answers every accept at once, as if committed.

    Nothing is stored or delivered: what is left is the listener's own cost
    (framing, parsing, authentication, validation), i.e. its ceiling."""
    from schemas.notification import AcceptResult, Notification

    async def accept(n: Notification) -> AcceptResult:
        return AcceptResult(apns_id=n.apns_id, id=0)

    async def accept_many(ns: Any) -> list[AcceptResult]:
        return [AcceptResult(apns_id=n.apns_id, id=0) for n in ns]

    core.engine.accept = accept
    core.engine.accept_many = accept_many


def add_api_switches(ap: argparse.ArgumentParser) -> None:
    """``--no-store`` and ``--no-gc-tuning``, shared by the HTTP/2 and REST benches."""
    ap.add_argument(
        "--no-store",
        action="store_true",
        help="answer without the durable accept: the API's ceiling, not a usable gateway",
    )
    ap.add_argument(
        "--no-gc-tuning", dest="gc_tuning", action="store_false", help="keep CPython's default collector thresholds"
    )


def after_listening(gc_tuning: bool) -> None:
    """What every pushgw process does once it listens (unless ``--no-gc-tuning``)."""
    if gc_tuning:
        from connection_server.gc_tuning import tune_gc

        tune_gc()


def _serve(dsn: str, redis: str, port: int, ready: Any, stop: Any, no_store: bool, gc_tuning: bool) -> None:
    async def run() -> None:
        from gateway.runtime import Core
        from provider_api.h2_server import H2Listener

        cfg = _cfg(dsn, redis, port)
        core = await Core.open(cfg)
        if no_store:
            answer_without_store(core)
        listener = H2Listener(cfg, core, reuse_port=True)
        await listener.start()
        after_listening(gc_tuning)
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


async def _drop_db(admin: str, dsn: str) -> None:
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{dsn.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass
class Outcome:
    ok: int = 0
    c4xx: int = 0
    c5xx: int = 0
    failed: int = 0  # streams that got no answer (reset, refused, connection lost)

    @property
    def other(self) -> int:
        return self.c4xx + self.c5xx + self.failed


def _parse(out: str) -> Outcome | None:
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    reqs = re.search(r"requests: (\d+) total, \d+ started, \d+ done, \d+ succeeded, (\d+) failed, (\d+) errored", out)
    if not codes or not reqs:
        return None
    return Outcome(int(codes.group(1)), int(codes.group(3)), int(codes.group(4)), int(reqs.group(2)))


def run_phase(
    name: str,
    port: int,
    jwt: str,
    slices: list[list[str]],
    per_conn: int,
    args: argparse.Namespace,
    ctx: dict[str, Any],
) -> bool:
    """One h2load instance (one connection) per token slice, all at once."""
    dsn, pids = ctx["dsn"], ctx["pids"]
    with tempfile.TemporaryDirectory() as tmp:
        body = os.path.join(tmp, "body.json")
        with open(body, "wb") as fb:
            fb.write(BODY)
        cmds = []
        for i, toks in enumerate(slices):
            uris = os.path.join(tmp, f"uris{i}.txt")
            with open(uris, "w") as f:
                f.write("".join(f"http://127.0.0.1:{port}/3/device/{t}\n" for t in toks))
            cmds.append([
                "h2load", "-n", str(per_conn), "-c", "1", "-m", str(args.m), "-t", "1", "-d", body,
                "-H", f"authorization: bearer {jwt}", "-H", f"apns-topic: {BUNDLE}",
                "-H", "apns-push-type: alert", "-i", uris,
            ])  # fmt: skip
        rows0 = asyncio.run(_count(dsn))
        cpu0 = [cpu_seconds(p) for p in pids]
        gen0, pg0 = children_cpu_seconds(), postgres_cpu_seconds()
        t0 = time.monotonic()
        running = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for c in cmds]
        outs = [r.communicate(timeout=600)[0] for r in running]
        secs = time.monotonic() - t0
        gen = children_cpu_seconds() - gen0
        pg1 = postgres_cpu_seconds()
        pg = f"PostgreSQL CPU {pg1 - pg0:.1f} s; " if pg0 is not None and pg1 is not None else ""
        per_proc = [cpu_seconds(p) - c for p, c in zip(pids, cpu0, strict=True)]
    parsed = [_parse(o) for o in outs]
    unparsed = [o for o, r in zip(outs, parsed, strict=True) if r is None]
    if unparsed:
        print(f"{name}: could not parse h2load output:\n{unparsed[0]}")
        return False
    results = [r for r in parsed if r is not None]
    ok, other = sum(r.ok for r in results), sum(r.other for r in results)
    c4, c5, failed = (sum(getattr(r, f) for r in results) for f in ("c4xx", "c5xx", "failed"))
    committed = asyncio.run(_count(dsn)) - rows0
    cpu = sum(per_proc)
    spread = max(per_proc) / max(min(per_proc), 1e-9) if len(per_proc) > 1 else 1.0
    print(
        f"{name:4s}: {ok:,} accepted (200) in {secs:.2f} s = {ok / secs:,.0f} durable notifications/s; "
        f"{other} others ({c4} 4xx, {c5} 5xx, {failed} unanswered); rows committed {committed:,}\n"
        f"      API CPU {' + '.join(f'{c:.1f}' for c in per_proc)} s = {1e6 * cpu / max(ok, 1):,.0f} us per "
        f"accepted request (busiest process {max(per_proc) / secs:.0%} of a core); "
        f"h2load CPU {gen:.1f} s; {pg}load average {os.getloadavg()[0]:.1f}"
    )
    if spread > 1.5:
        print(f"      WARNING: API CPU split {spread:.1f}:1 between processes (SO_REUSEPORT spread unevenly)")
    return bool(ctx["no_store"]) or committed >= ok


def run_h2(args: argparse.Namespace) -> int:
    admin, redis = os.environ["TEST_PG_DSN"], os.environ["TEST_REDIS_URL"]
    if not shutil.which("h2load"):
        print("h2load not found: apt-get install -y nghttp2-client")
        return 2
    hot, cold = token_list(1, args.hot_tokens), token_list(2, args.cold)
    dsn = asyncio.run(_create_db(admin))
    jwt = asyncio.run(_seed(dsn, redis, hot + cold))
    port = _free_port()
    mpctx = mp.get_context("spawn")
    stop = mpctx.Event()
    procs, readies = [], []
    for _ in range(args.procs):
        ready = mpctx.Event()
        p = mpctx.Process(target=_serve, args=(dsn, redis, port, ready, stop, args.no_store, args.gc_tuning))
        p.start()
        procs.append(p)
        readies.append(ready)
    try:
        for r in readies:
            if not r.wait(30):
                print("server did not start")
                return 1
        ctx = {"dsn": dsn, "pids": [p.pid for p in procs], "no_store": args.no_store}
        if args.no_store:
            print("--no-store: the accept answers 200 without the store (a ceiling, nothing is stored)")
        print(
            f"HTTP/2 benchmark: {args.procs} API processes on one port (SO_REUSEPORT), h2c, "
            f"h2load {args.c} connections x {args.m} streams (one h2load instance per connection)"
        )
        ok = True
        if args.n:
            per = args.n // args.c
            # Each connection walks the hot tokens from its own offset.
            step = max(1, len(hot) // args.c)
            slices = [hot[i * step :] + hot[: i * step] for i in range(args.c)]
            print(f"hot : {per * args.c:,} requests over {len(hot):,} tokens (cache hits after the first pass)")
            ok &= run_phase("hot", port, jwt, slices, per, args, ctx)
        if args.cold:
            per = len(cold) // args.c
            slices = [cold[i * per : (i + 1) * per] for i in range(args.c)]
            print(f"cold: {per * args.c:,} requests, each to a different token (every one a token-cache miss)")
            ok &= run_phase("cold", port, jwt, slices, per, args, ctx)
        return 0 if ok else 1
    finally:
        stop.set()
        for p in procs:
            p.join(15)
            if p.is_alive():
                p.terminate()
        asyncio.run(_drop_db(admin, dsn))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest provider")
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("-n", type=int, default=60_000, help="requests of the hot run (0: skip it)")
    ap.add_argument("--hot-tokens", type=int, default=2000)
    ap.add_argument("--cold", type=int, default=20_000, help="requests (= distinct tokens) of the cold run (0: skip)")
    ap.add_argument("-c", type=int, default=64, help="connections (one h2load instance each)")
    ap.add_argument("-m", type=int, default=16, help="concurrent streams per connection")
    add_api_switches(ap)
    args = ap.parse_args(argv)
    return run_h2(args)
