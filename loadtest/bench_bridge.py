"""Bridge benchmark: relayed notifications/s to the strict mock of Apple over TLS h2.

``python -m loadtest bridge [--n 20000] [--connections 4] [--streams 1000] [--store sqlite|postgres|none]``

The mock runs in its own process (as Apple would be elsewhere).  Phase 1
(``client``) drives the pool directly with every stream slot busy; phase 2
(``sender``) accepts N kind-apns notifications into the store and times the
BridgeSender from start until every row is ``relayed``.  PostgreSQL needs
TEST_PG_DSN (``make bench-bridge`` provides it).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

from gateway.apns_bridge.pool import ConnectionPool, make_ssl_context
from gateway.apns_bridge.signer import ProviderTokenSigner
from tests.bridge.certs import make_p8, make_self_signed
from tests.bridge.mock_apple import MockApple

TEAM, KID, TOPIC = "TEAM123456", "KEY1234567", "com.example.bench"
TOKENS = [f"{i:064x}" for i in range(1, 101)]


def _mock_process(cert: str, key: str, public: str, streams: int, port_q: mp.Queue, stop: mp.Event) -> None:  # type: ignore[type-arg]
    async def run() -> None:
        apple = MockApple(cert, key)
        apple.add_key(KID, TEAM, public)
        apple.max_streams = streams
        for t in TOKENS:
            apple.add_token(t, TOPIC)
        apple.answered = _Discard()  # type: ignore[assignment]
        port_q.put(await apple.start())
        while not stop.is_set():  # noqa: ASYNC110  (a multiprocessing Event)
            await asyncio.sleep(0.2)
        await apple.stop()

    uvloop.run(run())


class _Discard(list):  # type: ignore[type-arg]
    def append(self, item: object) -> None:  # keep the mock's memory flat
        pass


async def bench_client(port: int, ca: str, private: str, n: int, connections: int, streams: int) -> float:
    pool = ConnectionPool(
        "127.0.0.1", port, make_ssl_context(ca), max_connections=connections, max_streams_per_conn=streams
    )
    signer = ProviderTokenSigner(TEAM, KID, private)
    payload = b'{"aps":{"alert":"bench"}}'
    sem = asyncio.Semaphore(connections * streams)

    async def one(i: int) -> int:
        async with sem:
            h = [
                (b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"127.0.0.1"),
                (b":path", b"/3/device/" + TOKENS[i % 100].encode()),
                (b"authorization", b"bearer " + signer.token().encode()),
                (b"apns-id", str(uuid.uuid4()).encode()), (b"apns-topic", TOPIC.encode()),
                (b"apns-push-type", b"alert"), (b"apns-priority", b"10"),
            ]  # fmt: skip
            return (await pool.request(h, payload, 30)).status

    await asyncio.gather(*(one(i) for i in range(200)))  # warm-up: open the connections
    t0 = time.perf_counter()
    statuses = await asyncio.gather(*(one(i) for i in range(n)))
    dt = time.perf_counter() - t0
    await pool.close()
    assert statuses.count(200) == n, "not every request succeeded"
    return n / dt


async def bench_sender(port: int, ca: str, private: str, n: int, connections: int, store_kind: str) -> float:
    from gateway.apns_bridge.keyvault import KeyVault
    from gateway.apns_bridge.sender import BridgeSender
    from gateway.config import Config
    from gateway.store import open_store
    from schemas.notification import Environment, Notification, Status, TokenKind

    tmp = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    dsn = os.environ.get("TEST_PG_DSN", "") if store_kind == "postgres" else ""
    cfg = Config(data_dir=str(tmp), database_url=dsn, secret_key="bench", apns_sandbox_host="127.0.0.1",
                 apns_production_host="127.0.0.1", apns_port=port, apns_ca_file=ca)  # fmt: skip
    store = await open_store(cfg)
    team = f"T{uuid.uuid4().hex[:9].upper()}"
    await store.create_team(team, "bench")
    app = await store.create_app(team, TOPIC + "." + team)
    KeyVault.from_config(cfg).put(app.app_id, TEAM, KID, private)
    for t in TOKENS:
        await store.register_apns_token(app.app_id, t, TOPIC, Environment.SANDBOX)
    notes = [
        Notification(
            apns_id=str(uuid.uuid4()),
            app_id=app.app_id,
            token=TOKENS[i % 100],
            topic=TOPIC,
            payload=b'{"aps":{"alert":"bench"}}',
            kind=TokenKind.APNS,
        )
        for i in range(n)
    ]
    for i in range(0, n, 1000):
        await store.accept_many(notes[i : i + 1000])
    sender = BridgeSender(cfg, store, batch=500, concurrency=2000, max_connections=connections)
    t0 = time.perf_counter()
    await sender.start()
    last = notes[-1].apns_id
    while True:
        st = await store.status(app.app_id, last)
        if st is not None and st.status is not Status.PENDING:
            break
        await asyncio.sleep(0.05)
    # The last row done is not proof that all are: check a sample of the rest.
    for x in notes[::97]:
        while (await store.status(app.app_id, x.apns_id)).status is Status.PENDING:  # type: ignore[union-attr]  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    dt = time.perf_counter() - t0
    await sender.stop()
    await store.close()
    return n / dt


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest bridge")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--streams", type=int, default=500, help="mock's SETTINGS_MAX_CONCURRENT_STREAMS")
    ap.add_argument(
        "--store",
        choices=("sqlite", "postgres", "none"),
        default="postgres" if os.environ.get("TEST_PG_DSN") else "sqlite",
    )
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-bridge-tls-"))
    cert, key = make_self_signed(tmp)
    private, public = make_p8()
    ctx = mp.get_context("spawn")
    port_q: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
    stop = ctx.Event()
    proc = ctx.Process(target=_mock_process, args=(cert, key, public, args.streams, port_q, stop), daemon=True)
    proc.start()
    try:
        port = port_q.get(timeout=20)
        rate = uvloop.run(bench_client(port, cert, private, args.n, args.connections, args.streams))
        print(f"client: {args.n} requests, {args.connections} connections x {args.streams} streams: {rate:,.0f} req/s")
        if args.store != "none":
            rate = uvloop.run(bench_sender(port, cert, private, args.n, args.connections, args.store))
            print(f"sender ({args.store} store -> mock): {args.n} notifications relayed: {rate:,.0f} notifications/s")
    finally:
        stop.set()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
            proc.join()
    return 0
