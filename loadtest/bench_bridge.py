"""Bridge benchmark: relayed notifications/s to the strict mock of Apple over TLS h2.

``python -m loadtest bridge [--n 10000] [--connections 4] [--streams 500] [--store sqlite|postgres|none]
[--no-aioapns]``

The mock runs in its own process (as Apple would be elsewhere), in its cheap
mode (no h2 header validation, no Huffman) so it does not cap what it
measures.  Phases, all against the same mock in one run:

1. ``client``: our pool driven directly with every stream slot busy;
2. ``aioapns``: the same load through aioapns 4.0 (the issue's reference);
3. ``sender``: N kind-apns notifications accepted into the store, timed from
   BridgeSender start until every row is ``relayed``.

Each phase prints wall-clock req/s and CPU per request of our process, the
mock and (phase 3) PostgreSQL: on a shared machine the wall-clock figure is
noise, the CPU figures and the ratios within one run are not.  PostgreSQL
needs TEST_PG_DSN (``make bench-bridge`` provides it).
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
from typing import Any

import uvloop

from gateway.apns_bridge.client import RequestHeader
from gateway.apns_bridge.pool import ConnectionPool, make_ssl_context
from gateway.apns_bridge.signer import ProviderTokenSigner
from tests.bridge.certs import make_p8, make_self_signed
from tests.bridge.mock_apple import MockApple

TEAM, KID, TOPIC = "TEAM123456", "KEY1234567", "com.example.bench"
TOKENS = [f"{i:064x}" for i in range(1, 101)]


def _mock_process(cert: str, key: str, public: str, streams: int, port_q: Any, stop: Any, cpu: Any) -> None:
    async def run() -> None:
        apple = MockApple(cert, key, cheap=True)
        apple.add_key(KID, TEAM, public)
        apple.max_streams = streams
        for t in TOKENS:
            apple.add_token(t, TOPIC)
        apple.answered = _Discard()
        port_q.put(await apple.start())
        while not stop.is_set():
            cpu.value = time.process_time()  # read by the parent for CPU per request
            await asyncio.sleep(0.05)
        await apple.stop()

    uvloop.run(run())


class CpuMeter:
    """CPU seconds of this process and of the mock over a measured window.

    The machine is shared: wall-clock rates are noisy, CPU per request is not.
    With one core each, the ceiling is 1 / max(ours, mock's) per second.
    """

    def __init__(self, mock_cpu: Any) -> None:
        self._mock = mock_cpu

    def __enter__(self) -> CpuMeter:
        time.sleep(0.06)  # let the mock publish a fresh reading
        self.ours0, self.mock0 = time.process_time(), self._mock.value
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.06)
        self.ours = time.process_time() - self.ours0
        self.mock = self._mock.value - self.mock0

    store: float | None = None  # PostgreSQL's CPU seconds, when measured

    def per_request_us(self, n: int) -> str:
        text = f"CPU per request: ours {self.ours / n * 1e6:,.0f} us, mock {self.mock / n * 1e6:,.0f} us"
        if self.store is not None:
            text += f", PostgreSQL {self.store / n * 1e6:,.0f} us"
        return text


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # the process ended
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _ppid(pid: int | str) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("PPid:")))


def _server_processes(backend_pid: int) -> list[int]:
    """The postmaster of ``backend_pid`` and all its children (backends, WAL writer, ...)."""
    postmaster = _ppid(backend_pid)
    assert postmaster is not None
    children = [int(e.name) for e in Path("/proc").iterdir() if e.name.isdigit() and _ppid(e.name) == postmaster]
    return [postmaster, *children]


class PostgresCpu:
    """CPU seconds of the PostgreSQL server (postmaster and all its children) the store uses."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.pids: list[int] = []

    async def find(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            # Read the tree while the backend lives: once closed, its /proc entry is gone.
            self.pids = _server_processes(await conn.fetchval("SELECT pg_backend_pid()"))
        finally:
            await conn.close()

    def total(self) -> float:
        return sum(_cpu_s(pid) for pid in self.pids)


class _Discard(list[Any]):
    def append(self, item: object) -> None:  # keep the mock's memory flat
        pass


async def bench_client(
    port: int, ca: str, private: str, n: int, connections: int, streams: int, meter: CpuMeter
) -> float:
    pool = ConnectionPool(
        "127.0.0.1", port, make_ssl_context(ca), max_connections=connections, max_streams_per_conn=streams
    )
    signer = ProviderTokenSigner(TEAM, KID, private)
    payload = b'{"aps":{"alert":"bench"}}'
    sem = asyncio.Semaphore(connections * streams)

    async def one(i: int) -> int:
        async with sem:
            h: list[RequestHeader] = [
                (b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"127.0.0.1"),
                (b":path", b"/3/device/" + TOKENS[i % 100].encode(), True),  # never indexed, as the sender does
                (b"authorization", b"bearer " + signer.token().encode()),
                (b"apns-id", str(uuid.uuid4()).encode(), True), (b"apns-topic", TOPIC.encode()),
                (b"apns-push-type", b"alert"), (b"apns-priority", b"10"),
            ]  # fmt: skip
            return (await pool.request(h, payload, 30)).status

    await asyncio.gather(*(one(i) for i in range(200)))  # warm-up: open the connections
    with meter:
        t0 = time.perf_counter()
        statuses = await asyncio.gather(*(one(i) for i in range(n)))
        dt = time.perf_counter() - t0
    await pool.close()
    assert statuses.count(200) == n, "not every request succeeded"
    return n / dt


async def bench_aioapns(
    port: int, ca: str, private: str, n: int, connections: int, streams: int, meter: CpuMeter
) -> float:
    """The same load through aioapns 4.0 (the reference figure of issue 6), same mock, same run."""
    import ssl

    from aioapns import APNs, NotificationRequest, PushType
    from aioapns import connection as aioapns_connection

    for cls in (aioapns_connection.APNsProductionClientProtocol, aioapns_connection.APNsDevelopmentClientProtocol):
        cls.APNS_SERVER, cls.APNS_PORT = "127.0.0.1", port
    client = APNs(
        key=private,
        key_id=KID,
        team_id=TEAM,
        topic=TOPIC,
        use_sandbox=True,
        max_connections=connections,
        ssl_context=ssl.create_default_context(cafile=ca),
    )
    sem = asyncio.Semaphore(connections * streams)

    async def one(i: int) -> bool:
        async with sem:
            req = NotificationRequest(
                device_token=TOKENS[i % 100],
                message={"aps": {"alert": "bench"}},
                notification_id=str(uuid.uuid4()),
                push_type=PushType.ALERT,
            )
            return bool((await client.send_notification(req)).is_successful)

    try:
        await asyncio.gather(*(one(i) for i in range(200)))
        with meter:
            t0 = time.perf_counter()
            ok = await asyncio.gather(*(one(i) for i in range(n)))
            dt = time.perf_counter() - t0
    finally:
        client.pool.close()
    assert all(ok), "not every aioapns request succeeded"
    return n / dt


async def bench_sender(
    port: int, ca: str, private: str, n: int, connections: int, store_kind: str, meter: CpuMeter
) -> float:
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
    sender = BridgeSender(cfg, store, max_connections=connections)
    pg = PostgresCpu(dsn) if dsn else None
    if pg is not None:
        await store.ping()  # the pool's connections exist before the server's processes are listed
        await pg.find()
        pg0 = pg.total()
    meter.__enter__()
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
    meter.__exit__()
    if pg is not None:
        meter.store = pg.total() - pg0
    await sender.stop()
    await store.close()
    return n / dt


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m loadtest bridge")
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--streams", type=int, default=500, help="mock's SETTINGS_MAX_CONCURRENT_STREAMS")
    ap.add_argument(
        "--store",
        choices=("sqlite", "postgres", "none"),
        default="postgres" if os.environ.get("TEST_PG_DSN") else "sqlite",
    )
    ap.add_argument("--no-aioapns", dest="aioapns", action="store_false", help="skip the aioapns comparison")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-bridge-tls-"))
    cert, key = make_self_signed(tmp)
    private, public = make_p8()
    ctx = mp.get_context("spawn")
    port_q: Any = ctx.Queue()
    stop = ctx.Event()
    mock_cpu = ctx.Value("d", 0.0)
    proc = ctx.Process(
        target=_mock_process, args=(cert, key, public, args.streams, port_q, stop, mock_cpu), daemon=True
    )
    proc.start()
    try:
        port = port_q.get(timeout=20)
        meter = CpuMeter(mock_cpu)
        rate = uvloop.run(bench_client(port, cert, private, args.n, args.connections, args.streams, meter))
        print(f"client: {args.n} requests, {args.connections} connections x {args.streams} streams: {rate:,.0f} req/s")
        print(f"  {meter.per_request_us(args.n)}")
        if args.aioapns:
            meter = CpuMeter(mock_cpu)
            rate = uvloop.run(bench_aioapns(port, cert, private, args.n, args.connections, args.streams, meter))
            print(f"aioapns 4.0, same mock and load: {rate:,.0f} req/s")
            print(f"  {meter.per_request_us(args.n)}")
        if args.store != "none":
            meter = CpuMeter(mock_cpu)
            rate = uvloop.run(bench_sender(port, cert, private, args.n, args.connections, args.store, meter))
            print(f"sender ({args.store} store -> mock): {args.n} notifications relayed: {rate:,.0f} notifications/s")
            print(f"  {meter.per_request_us(args.n)} (ours = sender + store client)")
    finally:
        stop.set()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.terminate()
            proc.join()
    return 0
