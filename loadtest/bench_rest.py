"""REST benchmark: durable accepted notifications per second through /api/v1.

    scripts/with-test-services.sh .venv/bin/python -m loadtest rest [--duration S] [--servers N]
        [--clients N] [--connections N] [--tokens N] [--cold-tokens N] [--batch N] [--phases ...]

Starts ``--servers`` API processes sharing one port (SO_REUSEPORT) on a fresh
PostgreSQL database (TEST_PG_DSN), registers ``--tokens`` hot and
``--cold-tokens`` cold device tokens, then measures for ``--duration``
seconds each: single sends (``POST /api/v1/send``, requests/s) and batch
sends (``POST /api/v1/send/batch``, notifications/s), first over the hot
tokens (after the first pass every one is in the API's token cache), then
over the cold ones (``single-cold``, ``batch-cold``: each token is used
once, or again only after it left the cache, as in traffic spread over
many devices).
Only 200 answers (committed notifications) are counted, and the figure is
checked against the rows committed in PostgreSQL during the phase.  Load
goes to 127.0.0.1 only; every process it starts is stopped by its pid.

Load generator: ``wrk`` (C, Debian package ``wrk``) with a Lua script that
cycles through the tokens, one thread per ``--clients``; without wrk (or
with ``--python-client``) the aiohttp client in Python, which on two cores
takes about as much CPU as the server it measures.  The API processes' CPU
time per accepted notification is printed too: on a shared machine it is
the steadier figure.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import shutil
import socket
import sys
import time
import uuid
from typing import Any

from loadtest.bench_provider import (
    add_api_switches,
    after_listening,
    answer_without_store,
    children_cpu_seconds,
    cpu_seconds,
)
from loadtest.bench_store import postgres_cpu_seconds

TOPIC = "com.bench.rest"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(dsn: str, port: int, no_store: bool, gc_tuning: bool) -> None:
    import uvloop
    from aiohttp import web

    from gateway.config import Config
    from gateway.runtime import Core
    from provider_api.rest import build_rest_app

    async def run() -> None:
        cfg = Config(database_url=dsn, rest_port=port)
        core = await Core.open(cfg)
        if no_store:
            answer_without_store(core)
        runner = web.AppRunner(build_rest_app(cfg, core), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True).start()
        after_listening(gc_tuning)
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            await core.close()

    uvloop.run(run())


def _load(port: int, key: str, tokens: list[str], mode: str, batch: int, conns: int, duration: float, q: Any) -> None:
    import orjson
    import uvloop
    from aiohttp import ClientSession, TCPConnector

    async def run() -> tuple[int, int]:
        ok = errors = 0
        stop_at = time.monotonic() + duration
        headers = {"X-API-Key": key, "Content-Type": "application/json"}
        url = f"http://127.0.0.1:{port}/api/v1/send" + ("/batch" if mode == "batch" else "")
        payload = {"aps": {"alert": "bench"}}

        async def worker(w: int) -> None:
            nonlocal ok, errors
            i = w
            async with ClientSession(connector=TCPConnector(limit=1, force_close=False)) as s:
                while time.monotonic() < stop_at:
                    if mode == "batch":
                        items = [
                            {"token": tokens[(i + j) % len(tokens)], "topic": TOPIC, "payload": payload}
                            for j in range(batch)
                        ]
                        body = orjson.dumps({"notifications": items})
                    else:
                        body = orjson.dumps({"token": tokens[i % len(tokens)], "topic": TOPIC, "payload": payload})
                    i += conns
                    async with s.post(url, data=body, headers=headers) as resp:
                        data = await resp.read()
                    if resp.status != 200:
                        errors += 1
                    elif mode == "batch":
                        ok += orjson.loads(data)["accepted"]
                    else:
                        ok += 1

        await asyncio.gather(*(worker(w) for w in range(conns)))
        return ok, errors

    q.put(uvloop.run(run()))


async def _setup(dsn: str, tokens: list[str]) -> str:
    """Team, app, API key and ``tokens`` registered; returns the API key."""
    import asyncpg

    from gateway.config import Config
    from gateway.runtime import Core
    from gateway.store.postgres import Q
    from schemas.notification import Environment

    core = await Core.open(Config(database_url=dsn))
    try:
        await core.store.create_team("BENCHTEAM1", "bench")
        app = await core.store.create_app("BENCHTEAM1", TOPIC)
        key = await core.store.create_api_key(app.app_id)
    finally:
        await core.close()
    # The store's own registration statement, pipelined: 60,000 tokens in seconds.
    conn = await asyncpg.connect(dsn)
    try:
        now = int(time.time() * 1000)
        await conn.executemany(
            Q["register_apns_token"], [(t, app.app_id, TOPIC, Environment.PRODUCTION.value, None, now) for t in tokens]
        )
    finally:
        await conn.close()
    return key


async def _admin(dsn: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _rows(dsn: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM notifications"))
    finally:
        await conn.close()


def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"API did not listen on {port}")


_WRK_LUA = r"""
-- pushgw REST bench: POST one of the precomputed bodies, cycling per thread.
local bodies = {}
counter = 0  -- globals: setup() and done() reach each thread's copy
accepted = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  -- threads start evenly spread over the bodies, so none repeats another's tokens soon
  thread:set("counter", (#threads - 1) * OFFSET)
end

function init(args)
  for line in io.lines(args[1]) do table.insert(bodies, line) end
  headers = {["Content-Type"] = "application/json", ["X-API-Key"] = args[2]}
end

function request()
  counter = counter + 1
  return wrk.format("POST", nil, headers, bodies[(counter % #bodies) + 1])
end

function response(status, headers, body)
  if status == 200 then
    local n = string.match(body, '"accepted":(%d+)')
    accepted = accepted + (tonumber(n) or 1)
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + (t:get("accepted") or 0) end
  io.write(string.format("ACCEPTED %d\n", total))
end
"""


def _bodies(tokens: list[str], mode: str, batch: int) -> list[bytes]:
    import orjson

    payload = {"aps": {"alert": "bench"}}
    if mode != "batch":
        return [orjson.dumps({"token": t, "topic": TOPIC, "payload": payload}) for t in tokens]
    out = []
    for start in range(0, len(tokens), batch):
        items = [{"token": tokens[(start + j) % len(tokens)], "topic": TOPIC, "payload": payload} for j in range(batch)]
        out.append(orjson.dumps({"notifications": items}))
    return out


def _connections(mode: str, args: argparse.Namespace) -> int:
    return int(args.batch_connections if mode == "batch" else args.connections)


def _run_wrk(port: int, key: str, tokens: list[str], mode: str, args: argparse.Namespace) -> tuple[int, int]:
    import re
    import subprocess
    import tempfile

    url = f"http://127.0.0.1:{port}/api/v1/send" + ("/batch" if mode == "batch" else "")
    with (
        tempfile.NamedTemporaryFile("w", suffix=".lua") as script,
        tempfile.NamedTemporaryFile("wb", suffix=".jsonl") as bodies,
    ):
        lines = _bodies(tokens, mode, args.batch)
        script.write(_WRK_LUA.replace("OFFSET", str(max(1, len(lines) // args.clients))))
        script.flush()
        bodies.write(b"\n".join(lines) + b"\n")
        bodies.flush()
        cmd = [
            "wrk", "-t", str(args.clients), "-c", str(args.clients * _connections(mode, args)),
            "-d", f"{args.duration:.0f}s", "--timeout", "10s", "-s", script.name, url,
            "--", bodies.name, key,
        ]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60).stdout
    accepted = re.search(r"ACCEPTED (\d+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: .*?timeout (\d+)", out)
    return int(accepted.group(1)) if accepted else 0, (int(non2xx.group(1)) if non2xx else 0) + (
        int(errors.group(1)) if errors else 0
    )


def _run_phase(
    ctx: Any, port: int, key: str, tokens: list[str], mode: str, args: argparse.Namespace
) -> tuple[int, int]:
    if not args.python_client and shutil.which("wrk"):
        return _run_wrk(port, key, tokens, mode, args)
    q = ctx.Queue()
    procs = [
        ctx.Process(
            target=_load, args=(port, key, tokens, mode, args.batch, _connections(mode, args), args.duration, q)
        )
        for _ in range(args.clients)
    ]
    for p in procs:
        p.start()
    results = [q.get(timeout=args.duration + 60) for _ in procs]
    for p in procs:
        p.join(10)
    return sum(r[0] for r in results), sum(r[1] for r in results)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest rest")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--servers", type=int, default=2)
    ap.add_argument("--clients", type=int, default=2, help="load-generator processes")
    ap.add_argument("--connections", type=int, default=128, help="connections per client (wrk thread or process)")
    ap.add_argument("--batch-connections", type=int, default=8, help="the same for batch sends (500 rows each)")
    ap.add_argument("--tokens", type=int, default=2000, help="hot tokens (cycled: cache hits)")
    ap.add_argument("--cold-tokens", type=int, default=60_000, help="tokens of the -cold phases")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument(
        "--phases",
        default="single,batch,single-cold,batch-cold",
        help="comma-separated: single, batch, single-cold, batch-cold",
    )
    ap.add_argument("--python-client", action="store_true", help="aiohttp client instead of wrk")
    add_api_switches(ap)
    args = ap.parse_args(argv)
    admin = os.environ.get("TEST_PG_DSN")
    if not admin:
        print("TEST_PG_DSN is not set: run inside scripts/with-test-services.sh", file=sys.stderr)
        return 2
    name = "bench_rest_" + uuid.uuid4().hex[:8]
    dsn = admin.rpartition("/")[0] + "/" + name
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    ctx = mp.get_context("spawn")
    servers: list[Any] = []
    try:
        from loadtest.bench_provider import token_list

        hot, cold = token_list(1, args.tokens), token_list(2, args.cold_tokens)
        key = asyncio.run(_setup(dsn, hot + cold))
        port = _free_port()
        servers = [
            ctx.Process(target=_serve, args=(dsn, port, args.no_store, args.gc_tuning)) for _ in range(args.servers)
        ]
        for p in servers:
            p.start()
        _wait_port(port)
        time.sleep(1.0)  # let every server finish opening its pool
        client = "aiohttp (Python)" if args.python_client or not shutil.which("wrk") else "wrk"
        if args.no_store:
            print("--no-store: sends are answered without the store (a ceiling, nothing is stored)")
        print(
            f"REST benchmark: {args.servers} API processes (SO_REUSEPORT), PostgreSQL, {client} with "
            f"{args.clients}x{args.connections} connections ({args.clients}x{args.batch_connections} for batches), "
            f"{args.duration:.0f} s per phase"
        )
        for phase in args.phases.split(","):
            mode, tokens = (phase.removesuffix("-cold"), cold) if phase.endswith("-cold") else (phase, hot)
            rows0 = asyncio.run(_rows(dsn))
            cpu0 = [cpu_seconds(p.pid) for p in servers if p.pid is not None]
            gen0, pg0 = children_cpu_seconds(), postgres_cpu_seconds()
            t0 = time.monotonic()
            ok, errors = _run_phase(ctx, port, key, tokens, mode, args)
            elapsed = time.monotonic() - t0
            cpu = [
                c1 - c0 for c0, c1 in zip(cpu0, (cpu_seconds(p.pid) for p in servers if p.pid is not None), strict=True)
            ]
            gen, pg1 = children_cpu_seconds() - gen0, postgres_cpu_seconds()
            committed = asyncio.run(_rows(dsn)) - rows0
            rate = ok / args.duration
            unit = "sends/s" if mode == "single" else f"notifications/s (batches of {args.batch})"
            reuse = f", each token used {ok / len(tokens):.1f} times" if phase.endswith("-cold") else ""
            print(
                f"  {phase:11s}: {rate:10,.0f} {unit}; {ok:,} accepted, {errors} non-200 answers, "
                f"{elapsed:.1f} s{reuse}"
            )
            print(
                f"               rows committed {committed:,}; API CPU {' + '.join(f'{c:.1f}' for c in cpu)} s "
                f"= {1e6 * sum(cpu) / max(ok, 1):,.0f} us per accepted notification "
                f"(load average {os.getloadavg()[0]:.1f})"
            )
            per = 1e6 / max(ok, 1)
            pg = f"PostgreSQL {(pg1 - pg0) * per:,.0f} us, " if pg0 is not None and pg1 is not None else ""
            print(f"               {pg}load generator {gen * per:,.0f} us per accepted notification")
            if committed < ok and not args.no_store:
                print("               ERROR: fewer rows committed than 200 answers")
                return 1
    finally:
        for p in servers:
            if p.pid is not None:
                os.kill(p.pid, 15)
        for p in servers:
            p.join(10)
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return 0
