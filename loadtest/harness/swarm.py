"""One load process holding many simulated devices (pushgw WebSocket or MQTT), served over ``rpc``.

Every device binds its socket to this process's own source address
(127.0.0.x), so tens of thousands of sockets don't run out of ephemeral
ports.  The swarm counts every message id that arrived (and how often), each
device's receipts, and send-to-receive latency (payload field ``t`` is the
sender's wall clock; same machine, same clock).
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections import Counter
from typing import Any

import msgspec

from loadtest.harness.latency import Recorder
from loadtest.harness.mqttdevice import MqttDevice
from loadtest.harness.wsdevice import WsDevice


class _Stamp(msgspec.Struct):
    t: float = 0.0
    i: str = ""


_decode_stamp = msgspec.json.Decoder(_Stamp).decode


class DeviceSwarm:
    def __init__(
        self, kind: str, ports: list[int], devices: list[tuple[str, str]], source: str, t0: float,
        reconnect: bool = False, drop_first: int = 0, duplicate_first: int = 0,
    ) -> None:  # fmt: skip
        self.kind = kind  # "pushgw" | "mqtt"
        self.ports = ports
        self.devices = devices  # pushgw: (device_id, secret); mqtt: (client_id, "")
        self.source = source
        self.reconnect = reconnect or duplicate_first > 0
        # Fault injection for the harness's own tests: ack the first ``drop_first``
        # pushes without counting them (the harness must report them lost), and
        # leave the first ``duplicate_first`` unacked and drop the socket (the
        # gateway redelivers; the harness must report them delivered twice).
        self.drop_left = drop_first
        self.duplicate_left = duplicate_first
        self.armed = False  # set by the first reset: the warm-up before it is not measured
        self.links: list[Any] = [None] * len(devices)
        self.port_of = [i % len(ports) for i in range(len(devices))]
        self.connected = 0
        self.waiters: dict[int, asyncio.Future[None]] = {}
        self.reconnects = 0
        self.close_codes: Counter[int] = Counter()
        self.failures: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reset(t0)

    def _reset(self, t0: float) -> None:
        self.t0 = t0
        # With reconnects (the mixed scenario), when and through which shard port
        # each id arrived, so a duplicate can be explained (e.g. acked just before
        # its shard was killed); kept only then, it costs the generator CPU.
        self.receipts: dict[str, list[tuple[float, int]]] = {}
        self.recorder = Recorder(t0)
        self.counts: Counter[str] = Counter()
        self.received = 0
        self.last_at = 0.0
        self.per_device = [0] * len(self.devices)

    # -- callbacks from the device protocols -------------------------------------

    def on_ready(self, dev: Any) -> None:
        self.connected += 1
        fut = self.waiters.pop(dev.index, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def on_message(self, dev: Any, msg_id: str, payload: bytes) -> bool:
        now = time.time()
        stamp = _decode_stamp(payload)
        key = msg_id or stamp.i
        measured = self.armed and stamp.t >= self.recorder.t0  # inject only into the measured part
        if measured and self.drop_left > 0 and key not in self.counts:
            self.drop_left -= 1
            return True
        self.counts[key] += 1
        if self.reconnect:
            self.receipts.setdefault(key, []).append((round(now - self.t0, 3), self.ports[self.port_of[dev.index]]))
        self.per_device[dev.index] += 1
        self.received += 1
        self.last_at = now
        if stamp.t:
            self.recorder.record(now, now - stamp.t)
        if measured and self.duplicate_left > 0 and self.counts[key] == 1:
            self.duplicate_left -= 1
            return False
        return True

    def on_lost(self, dev: Any, was_ready: bool) -> None:
        if was_ready:
            self.connected -= 1
        if dev.close_code is not None:
            self.close_codes[dev.close_code] += 1
        fut = self.waiters.pop(dev.index, None)
        if fut is not None and not fut.done():
            fut.set_exception(ConnectionError(f"closed ({dev.close_code})"))
        if self.reconnect and was_ready and not dev.closing and self.links[dev.index] is dev:
            # an unexpected loss (a killed shard): dial the next shard after a jittered pause
            self.reconnects += 1
            self.port_of[dev.index] = (self.port_of[dev.index] + 1) % len(self.ports)
            asyncio.get_running_loop().call_later(random.uniform(0.05, 1.0), self._redial, dev.index)

    # -- dialing -----------------------------------------------------------------

    def _factory(self, i: int) -> Any:
        port = self.ports[self.port_of[i]]
        if self.kind == "pushgw":
            device_id, secret = self.devices[i]
            return WsDevice(self, i, device_id, secret, f"127.0.0.1:{port}")
        return MqttDevice(self, i, self.devices[i][0])

    async def _dial(self, i: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self.waiters[i] = fut
        dev = self._factory(i)
        self.links[i] = dev
        try:
            async with asyncio.timeout(timeout):
                sock = _source_socket(self.source)
                try:
                    await loop.sock_connect(sock, ("127.0.0.1", self.ports[self.port_of[i]]))
                except BaseException:
                    sock.close()
                    raise
                await loop.create_connection(lambda: dev, sock=sock)
                await fut
        except BaseException:
            self.waiters.pop(i, None)
            dev.abort()
            raise

    def _redial(self, i: int) -> None:
        task = asyncio.get_running_loop().create_task(self._dial_quietly(i))
        self._tasks.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._tasks.discard)

    async def _dial_quietly(self, i: int) -> None:
        try:
            await self._dial(i, 30)
        except Exception as exc:
            self.failures[type(exc).__name__] += 1
            if self.reconnect:
                asyncio.get_running_loop().call_later(random.uniform(0.2, 1.0), self._redial, i)

    # -- commands ------------------------------------------------------------------

    async def cmd_connect(self, rate: float = 0.0, concurrency: int = 200, timeout: float = 60.0) -> dict[str, Any]:
        """Connect every device not connected yet; ``rate`` caps new connections per second (0 = no cap)."""
        sem = asyncio.Semaphore(concurrency)
        t_start = time.time()
        failed: Counter[str] = Counter()

        async def one(i: int, due: float) -> None:
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            async with sem:
                try:
                    await self._dial(i, timeout)
                except Exception as exc:
                    failed[type(exc).__name__ or "error"] += 1

        todo = [i for i, link in enumerate(self.links) if link is None or not link.ready]
        step = 1.0 / rate if rate > 0 else 0.0
        await asyncio.gather(*(one(i, t_start + k * step) for k, i in enumerate(todo)))
        return {"connected": self.connected, "failed": dict(failed), "seconds": time.time() - t_start}

    async def cmd_disconnect(self) -> int:
        for link in self.links:
            if link is not None:
                link.close()
        self.links = [None] * len(self.devices)
        await asyncio.sleep(0.5)
        self.connected = 0
        return 0

    async def cmd_stats(self) -> dict[str, Any]:
        return {"connected": self.connected, "received": self.received, "reconnects": self.reconnects,
                "last_at": self.last_at}  # fmt: skip

    async def cmd_reset(self, t0: float) -> None:
        self._reset(t0)
        self.armed = True

    async def cmd_report(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "per_device": self.per_device,
            "latency": self.recorder.export(),
            "reconnects": self.reconnects,
            "close_codes": dict(self.close_codes),
            "failures": dict(self.failures),
            "duplicates": {k: v for k, v in self.receipts.items() if len(v) > 1},
        }

    async def cmd_close(self) -> None:
        for link in self.links:
            if link is not None:
                link.closing = True
                link.abort()
        await asyncio.sleep(0.1)


#: Linux's IP_BIND_ADDRESS_NO_PORT (not exported by the socket module on 3.11).
_IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def _source_socket(source: str) -> socket.socket:
    """A TCP socket bound to ``source`` whose port is chosen at connect time.

    A plain ``bind((source, 0))`` reserves a port for any destination: past
    ~14,000 sockets on one source address (bind takes the odd half of the
    ephemeral range first) each bind scanned the range and connects fell
    from ~1,100/s to ~180/s at 100,000 devices.  With IP_BIND_ADDRESS_NO_PORT
    the port is picked by connect(), unique per destination.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, _IP_BIND_ADDRESS_NO_PORT, 1)
        sock.setblocking(False)
        sock.bind((source, 0))
    except BaseException:
        sock.close()
        raise
    return sock
