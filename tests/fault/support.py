"""Helpers for the fault suite (no tests here).

The topology is the one `pushgw cluster` starts (provider API, K shards, a
worker, PostgreSQL, Redis), but every role is its own child process so that
one of them can be SIGKILLed and restarted on the same ports.  The test
process plays the app backend (REST sends, each with its own apns-id) and the
devices (``DeviceClient``s given the list of every shard URL), and a
``Ledger`` counts every apns-id: answered 200, refused, unanswered, received
by the app, duplicate frames on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from connection_server import frames as f
from connection_server.client import DeviceClient

ROOT = Path(__file__).resolve().parents[2]
TEAM = "FAULTTEAM1"
BUNDLE = "com.example.fault"

#: Short timers so that the faults heal within a test's seconds.
FAST_ENV = {
    "PUSHGW_ACK_FLUSH_MS": "2",
    "PUSHGW_PRESENCE_TTL_S": "3",
    "PUSHGW_RECONNECT_DELAY_MS": "100",
    "PUSHGW_LOG_LEVEL": "warning",
}


def port_block(size: int) -> int:
    """A base port with ``size`` consecutive free ports above it.

    Taken below the kernel's ephemeral range (32768+): a role restarted on
    its port after a SIGKILL must not find it taken by some process's
    outgoing connection, which happened on the busy shared machine.
    """
    for _ in range(200):
        base = random.randrange(20000, 32000 - size)
        socks = []
        try:
            for p in range(base, base + size):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port block")


async def eventually(check: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> float:
    """Wait for ``check``; return the seconds it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)
    return time.monotonic() - start


async def _http_ok(http: aiohttp.ClientSession, url: str) -> tuple[bool, str]:
    """(answered 200, what was seen: status and body, or the error)."""
    try:
        # /readyz answers within its checks' bound (1.5 s); a loaded machine may add to that.
        async with http.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
            return r.status == 200, f"{r.status} {(await r.text())[:300]}"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return False, repr(exc)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Role:
    """One `python -m gateway.cli <role>` child process, restartable on the same ports."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], rest_port: int, log_dir: Path,
                 ws_port: int | None = None) -> None:  # fmt: skip
        self.name, self.args, self.env = name, args, env
        self.rest_port, self.ws_port = rest_port, ws_port
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", *self.args], cwd=ROOT, env=self.env,
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.starts += 1

    async def ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
                ok, seen = await _http_ok(http, f"http://127.0.0.1:{self.rest_port}/readyz")
                if ok and (self.ws_port is None or _port_open(self.ws_port)):
                    return
                assert time.monotonic() < deadline, f"{self.name} not ready (/readyz: {seen}): {self.log_tail()}"
                await asyncio.sleep(0.1)

    def kill(self) -> int:
        """SIGKILL; returns the exit status (-9)."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(10)

    def terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s (used in finally blocks)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class Device:
    device_id: str
    secret: str
    token: str
    client: DeviceClient | None = None
    got: list[str] = field(default_factory=list)  # apns-ids the app saw (after the SDK's dedupe)
    overflows: list[int] = field(default_factory=list)  # each "n dropped by the backlog cap" signal


class Cluster:
    """provider-api + ``shards`` connection servers + worker on one port block."""

    def __init__(self, pg_dsn: str, redis_url: str, log_dir: Path, shards: int = 2, worker: bool = False,
                 **env: str) -> None:  # fmt: skip
        self.pg_dsn = pg_dsn
        base = port_block(20)
        self.rest, self.h2, self.ws = base, base + 1, base + 2  # shard n: ws + n, rest + 10 + n
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGW_")}
        environ.update(PUSHGW_DATABASE_URL=pg_dsn, PUSHGW_REDIS_URL=redis_url, **FAST_ENV, **env)
        self.env = environ
        self.api = Role("provider-api", ["provider-api", "--rest-port", str(self.rest), "--http2-port", str(self.h2)],
                        environ, self.rest, log_dir)  # fmt: skip
        self.shards = [
            Role(f"shard{n}", ["connection-server", "--shard", str(n), "--ws-port", str(self.ws + n),
                               "--rest-port", str(self.rest + 10 + n)],
                 environ, self.rest + 10 + n, log_dir, ws_port=self.ws + n)
            for n in range(shards)
        ]  # fmt: skip
        self.worker = Role("worker", ["worker", "--rest-port", str(self.rest + 9)], environ, self.rest + 9, log_dir)
        self.with_worker = worker
        self.api_key = ""
        self.devices: list[Device] = []

    @property
    def roles(self) -> list[Role]:
        return [self.api, *self.shards, *([self.worker] if self.with_worker else [])]

    def shard_urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{self.ws + n}/v1/connect" for n in range(len(self.shards))]

    async def start(self) -> None:
        # Migrate and provision once, in-process, before the children start (they migrate too).
        from gateway import admin_ops
        from gateway.config import Config
        from gateway.store import open_store

        store = await open_store(Config(database_url=self.pg_dsn))
        try:
            await admin_ops.create_team(store, TEAM)
            await admin_ops.create_app(store, TEAM, BUNDLE)
            self.api_key = (await admin_ops.create_api_key(store, BUNDLE))["api_key"]
        finally:
            await store.close()
        for role in self.roles:
            role.start()
        await asyncio.gather(*(role.ready() for role in self.roles))

    async def restart(self, role: Role) -> float:
        """Start a dead role again; returns the seconds until it is ready."""
        t0 = time.monotonic()
        role.start()
        await role.ready()
        return time.monotonic() - t0

    async def add_devices(self, n: int, **client_kw: Any) -> list[Device]:
        """Register ``n`` devices over REST and connect each (shard ``i % K`` first, then the others)."""
        urls = self.shard_urls()
        out: list[Device] = []
        async with aiohttp.ClientSession(headers={"X-API-Key": self.api_key}) as http:
            for i in range(n):
                async with http.post(f"http://127.0.0.1:{self.rest}/api/v1/devices/register", json={}) as r:
                    assert r.status in (200, 201), await r.text()
                    dev = await r.json()
                async with http.post(
                    f"http://127.0.0.1:{self.rest}/api/v1/devices/{dev['device_id']}/tokens",
                    json={"topic": BUNDLE, "environment": "production"},
                ) as r:
                    assert r.status in (200, 201), await r.text()
                    token = (await r.json())["token"]
                d = Device(dev["device_id"], dev["secret"], token)
                k = i % len(urls)
                d.client = DeviceClient(urls[k:] + urls[:k], d.device_id, d.secret,
                                        on_push=lambda p, d=d: d.got.append(p.apns_id),
                                        on_overflow=d.overflows.append,
                                        backoff_min_s=0.05, backoff_max_s=1.0, **client_kw)  # fmt: skip
                d.client.start()
                out.append(d)
        for d in out:
            assert d.client is not None
            await d.client.wait_connected(15)
        self.devices.extend(out)
        return out

    def all_connected(self, devices: Iterable[Device] | None = None) -> bool:
        return all(d.client is not None and d.client.connected for d in (devices or self.devices))

    async def close(self) -> None:
        for d in self.devices:
            if d.client is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(d.client.stop(), 5)
        for role in self.roles:
            role.terminate()
        for role in self.roles:
            role.stop()


@dataclass
class Ledger:
    """Every apns-id the backend sent and what became of it."""

    accepted: set[str] = field(default_factory=set)  # answered 200
    refused: Counter[int] = field(default_factory=Counter)  # status -> count (503 ...)
    refused_ids: set[str] = field(default_factory=set)
    unanswered: list[tuple[Device, str]] = field(default_factory=list)  # connection lost, no status
    attempts: int = 0

    def received(self, devices: Iterable[Device]) -> Counter[str]:
        return Counter(i for d in devices for i in d.got)

    def lost(self, devices: Iterable[Device]) -> set[str]:
        return self.accepted - set(self.received(devices))

    @staticmethod
    def app_duplicates(devices: Iterable[Device]) -> int:
        return sum(c - 1 for c in Counter(i for d in devices for i in d.got).values() if c > 1)

    @staticmethod
    def wire_duplicates(devices: Iterable[Device]) -> int:
        return sum(d.client.duplicates for d in devices if d.client is not None)


class Sender:
    """Sends REST pushes round-robin over devices from ``concurrency`` tasks until stopped."""

    def __init__(self, cluster: Cluster, ledger: Ledger, devices: list[Device], concurrency: int = 4,
                 pause_s: float = 0.01) -> None:  # fmt: skip
        self.cluster, self.ledger, self.devices = cluster, ledger, devices
        self.concurrency, self.pause_s = concurrency, pause_s
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._n = 0
        #: (start, end, status or None) of every request, monotonic times
        self.log: list[tuple[float, float, int | None, str]] = []

    async def send_one(self, http: aiohttp.ClientSession, dev: Device, apns_id: str) -> int | None:
        body = {"token": dev.token, "topic": BUNDLE, "apns_id": apns_id, "payload": {"aps": {"alert": apns_id[:8]}}}
        t0 = time.monotonic()
        status: int | None
        try:
            async with http.post(f"http://127.0.0.1:{self.cluster.rest}/api/v1/send", json=body,
                                 timeout=aiohttp.ClientTimeout(total=10)) as r:  # fmt: skip
                status = r.status
                if status == 200:
                    data = await r.json()
                    assert data["apns_id"] == apns_id
        except (aiohttp.ClientError, TimeoutError, OSError):
            status = None
        self.log.append((t0, time.monotonic(), status, apns_id))
        self.ledger.attempts += 1
        if status == 200:
            self.ledger.accepted.add(apns_id)
        elif status is None:
            self.ledger.unanswered.append((dev, apns_id))
        else:
            self.ledger.refused[status] += 1
            self.ledger.refused_ids.add(apns_id)
        return status

    async def _loop(self) -> None:
        async with aiohttp.ClientSession(headers={"X-API-Key": self.cluster.api_key}) as http:
            while not self._stop.is_set():
                dev = self.devices[self._n % len(self.devices)]
                self._n += 1
                status = await self.send_one(http, dev, str(uuid.uuid4()))
                # A real client backs off while the API is unreachable or refusing.
                await asyncio.sleep(self.pause_s if status == 200 else 0.1)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop()) for _ in range(self.concurrency)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def retry_unanswered(self, timeout: float = 60.0) -> int:
        """Resend every unanswered request with the same apns-id until it gets a status
        (``concurrency`` at a time, as the sender itself did)."""
        todo, self.ledger.unanswered = self.ledger.unanswered, []
        deadline = time.monotonic() + timeout
        n = len(todo)

        async def retry(http: aiohttp.ClientSession) -> None:
            while todo:
                assert time.monotonic() < deadline, f"{len(todo)} requests never answered"
                dev, apns_id = todo.pop()
                if await self.send_one(http, dev, apns_id) is None:
                    todo.append(self.ledger.unanswered.pop())
                    await asyncio.sleep(0.1)

        async with aiohttp.ClientSession(headers={"X-API-Key": self.cluster.api_key}) as http:
            await asyncio.gather(*(retry(http) for _ in range(self.concurrency)))
        return n


async def store_rows(pg_dsn: str) -> dict[str, tuple[str, int]]:
    """apns_id -> (status, number of rows with that id) straight from PostgreSQL."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        rows = await conn.fetch(
            "SELECT apns_id::text AS apns_id, min(status) AS status, count(*) AS n FROM notifications GROUP BY apns_id"
        )
    finally:
        await conn.close()
    return {r["apns_id"]: (r["status"], r["n"]) for r in rows}


async def settle(cluster: Cluster, ledger: Ledger, timeout: float = 20.0) -> dict[str, Any]:
    """Wait until every accepted apns-id reached a device and is ``delivered`` in the store; the tallies."""
    devs = cluster.devices
    try:
        await eventually(lambda: not ledger.lost(devs), timeout, "every accepted push at a device")
    except AssertionError:
        timeout = 0.0  # something is lost: look at the store once, don't wait again
    waited = 0.0
    rows: dict[str, tuple[str, int]] = {}
    while True:
        rows = await store_rows(cluster.pg_dsn)
        if all(rows.get(i, ("", 0))[0] == "delivered" for i in ledger.accepted):
            break
        if waited >= timeout:
            break
        await asyncio.sleep(0.2)
        waited += 0.2
    return {
        "sent": ledger.attempts,
        "accepted": len(ledger.accepted),
        "delivered": len(ledger.accepted & set(ledger.received(devs))),
        "lost": sorted(ledger.lost(devs)),
        "app_duplicates": Ledger.app_duplicates(devs),
        "wire_duplicates": Ledger.wire_duplicates(devs),
        "not_delivered_in_store": sorted(i for i in ledger.accepted if rows.get(i, ("", 0))[0] != "delivered"),
        "multi_rows": sorted(i for i, (_, n) in rows.items() if n > 1),
        "refused": dict(ledger.refused),
        "lost_store_status": Counter(rows.get(i, ("absent", 0))[0] for i in ledger.lost(devs)),
    }


def report(name: str, tallies: dict[str, Any], **extra: Any) -> None:
    """One line per scenario in the pytest output (-s) and in $PUSHGW_FAULT_REPORT if set."""
    short = {k: (len(v) if isinstance(v, list) else v) for k, v in tallies.items()}
    line = f"FAULT {name}: {short} {extra}"
    print(line)
    path = os.environ.get("PUSHGW_FAULT_REPORT")
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


# --- PostgreSQL and Redis control (servers of scripts/with-test-services.sh) ---------------


def _pg(*args: str) -> None:
    pg_bin, data = os.environ["TEST_PG_BIN"], os.environ["TEST_PG_DATA"]
    cmd = [f"{pg_bin}/pg_ctl", "-D", data, *args]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


async def pg_stop() -> None:
    await asyncio.to_thread(_pg, "stop", "-m", "fast", "-w")


def _pg_opts() -> str:
    """The server options of the running cluster (postmaster.opts), minus the binary and -D."""
    import shlex

    words = shlex.split(Path(os.environ["TEST_PG_DATA"], "postmaster.opts").read_text())[1:]
    out, skip = [], False
    for w in words:
        if skip:
            skip = False
        elif w == "-D":
            skip = True
        else:
            out.append(shlex.quote(w))
    return " ".join(out)


async def pg_start() -> None:
    data = os.environ["TEST_PG_DATA"]
    await asyncio.to_thread(_pg, "start", "-w", "-l", f"{data}/log", "-o", _pg_opts())


def pg_running() -> bool:
    return _port_open(int(os.environ["TEST_PG_PORT"]))


def _redis_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["redis-cli", "-p", os.environ["TEST_REDIS_PORT"], *args], capture_output=True, timeout=10)


def _redis_pid() -> int | None:
    try:
        return int(Path(os.environ["TEST_REDIS_DIR"], "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None


async def redis_stop() -> None:
    """Graceful stop without saving."""
    await asyncio.to_thread(_redis_cli, "shutdown", "nosave")
    await eventually(lambda: not redis_running(), 10, "redis down")


async def redis_kill() -> None:
    pid = _redis_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    await eventually(lambda: not redis_running(), 10, "redis down")


def redis_running() -> bool:
    return _port_open(int(os.environ["TEST_REDIS_PORT"]))


async def redis_start() -> None:
    d = os.environ["TEST_REDIS_DIR"]
    await asyncio.to_thread(
        subprocess.run,
        [os.environ["TEST_REDIS_BIN"], "--port", os.environ["TEST_REDIS_PORT"], "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--daemonize", "yes", "--pidfile", f"{d}/redis.pid",
         "--dir", d, "--logfile", f"{d}/log"],
        check=True, capture_output=True,
    )  # fmt: skip
    await eventually(redis_running, 10, "redis up")


async def ensure_services() -> None:
    """finally-block helper: both servers are up when a test ends, whatever happened."""
    if not redis_running():
        await redis_start()
    if not pg_running():
        await pg_start()


async def presence_count(redis_url: str, devices: Iterable[Device]) -> int:
    import redis.asyncio as aioredis

    from gateway.bus.redis_presence import presence_key

    client = aioredis.Redis.from_url(redis_url)
    try:
        values = await client.mget([presence_key(d.device_id) for d in devices])
    finally:
        await client.aclose()
    return sum(v is not None for v in values)


__all__ = ["BUNDLE", "Cluster", "Device", "Ledger", "Sender", "eventually", "f", "report", "settle"]
