"""Provider-side load processes: pushgw over HTTP/2 and REST, Mosquitto over MQTT QoS 1.

A ``Sender`` runs a stepped rate schedule against a list of targets (pushgw
tokens or MQTT device topics).  Every message carries a fresh id and the
sender's wall clock (``t``) in its payload.  An id counts as accepted only
on a success answer (HTTP/2 200, REST item code 200, MQTT PUBACK); those
ids go to the ledger, so anything accepted and not delivered shows as lost.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from typing import Any

import msgspec

from loadtest.harness.h2client import H2Client
from loadtest.harness.latency import Recorder
from loadtest.harness.mqttdevice import MqttPublisher

TICK_S = 0.02
REST_BATCH_MAX = 500


class _Item(msgspec.Struct):
    code: int
    apns_id: str | None = None


class _BatchResult(msgspec.Struct):
    results: list[_Item]


_decode_batch = msgspec.json.Decoder(_BatchResult).decode


class Sender:
    def __init__(self, kind: str, port: int, targets: list[str], topic: str = "", credential: str = "",
                 connections: int = 2, max_inflight: int = 2000, t0: float = 0.0) -> None:  # fmt: skip
        self.kind = kind  # "h2" | "rest" | "mqtt"
        self.port = port
        self.targets = targets  # pushgw: device tokens; mqtt: client ids
        self.topic = topic
        self.credential = credential  # h2: provider JWT; rest: API key
        self.connections = connections
        self.max_inflight = max_inflight
        self.accepted: list[str] = []
        self.rejected: Counter[str] = Counter()
        self.sent = 0
        self.inflight = 0
        self.accept_latency = Recorder(t0)
        self.per_second: Counter[int] = Counter()
        self.t0 = t0
        self._links: list[Any] = []
        self._http: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- connections -----------------------------------------------------------------

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        if self._links or self._http is not None:
            return
        if self.kind == "h2":
            for _ in range(self.connections):
                client = H2Client(f"127.0.0.1:{self.port}", self._h2_done)
                await loop.create_connection(lambda c=client: c, "127.0.0.1", self.port)  # type: ignore[misc]
                await asyncio.wait_for(client.ready, 10)
                self._links.append(client)
        elif self.kind == "mqtt":
            for _ in range(self.connections):
                pub = MqttPublisher(self._mqtt_ack)
                await loop.create_connection(lambda p=pub: p, "127.0.0.1", self.port)  # type: ignore[misc]
                await asyncio.wait_for(pub.connected, 10)
                self._links.append(pub)
        else:
            from aiohttp import ClientSession, TCPConnector

            self._http = ClientSession(connector=TCPConnector(limit=self.connections))

    def _ok(self, msg_id: str, sent_at: float) -> None:
        now = time.time()
        self.accepted.append(msg_id)
        self.accept_latency.record(now, now - sent_at)
        self.per_second[int(now - self.t0)] += 1

    def _h2_done(self, token: tuple[str, float], status: int) -> None:
        self.inflight -= 1
        if status == 200:
            self._ok(*token)
        else:
            self.rejected[str(status)] += 1

    def _mqtt_ack(self, token: tuple[str, float]) -> None:
        self.inflight -= 1
        self._ok(*token)

    # -- sending ---------------------------------------------------------------------

    def _payload(self, msg_id: str, now: float) -> bytes:
        if self.kind == "mqtt":
            return b'{"i":"%s","t":%.6f}' % (msg_id.encode(), now)
        return b'{"aps":{"alert":"load"},"t":%.6f}' % now

    async def _send(self, targets: list[str]) -> None:
        now = time.time()
        if self.kind == "rest":
            for start in range(0, len(targets), REST_BATCH_MAX):
                chunk = targets[start : start + REST_BATCH_MAX]
                self.inflight += len(chunk)
                task = asyncio.get_running_loop().create_task(self._rest_batch(chunk, now))
                self._tasks.add(task)  # the loop keeps only a weak reference
                task.add_done_callback(self._tasks.discard)
            return
        for i, target in enumerate(targets):
            msg_id = str(uuid.uuid4())
            link = self._links[(self.sent + i) % len(self._links)]
            self.inflight += 1
            if self.kind == "h2":
                headers = [(b"authorization", b"bearer " + self.credential.encode()),
                           (b"apns-topic", self.topic.encode()), (b"apns-id", msg_id.encode()),
                           (b"apns-push-type", b"alert")]  # fmt: skip
                link.post(b"/3/device/" + target.encode(), headers, self._payload(msg_id, now), (msg_id, now))
            elif not link.publish(b"d/" + target.encode(), self._payload(msg_id, now), (msg_id, now)):
                self.inflight -= 1
                self.rejected["no packet id"] += 1

    async def _rest_batch(self, targets: list[str], sent_at: float) -> None:
        ids = [str(uuid.uuid4()) for _ in targets]
        items = b",".join(
            b'{"token":"%s","topic":"%s","apns_id":"%s","payload":%s}'
            % (t.encode(), self.topic.encode(), i.encode(), self._payload(i, sent_at))
            for t, i in zip(targets, ids, strict=True)
        )
        try:
            async with self._http.post(
                f"http://127.0.0.1:{self.port}/api/v1/send/batch", data=b'{"notifications":[%s]}' % items,
                headers={"X-API-Key": self.credential, "Content-Type": "application/json"},
            ) as resp:  # fmt: skip
                body = await resp.read()
                status = resp.status
        except Exception as exc:
            self.rejected[type(exc).__name__] += len(targets)
            return
        finally:
            self.inflight -= len(targets)
        if status != 200:
            self.rejected[str(status)] += len(targets)
            return
        for item, msg_id in zip(_decode_batch(body).results, ids, strict=True):
            if item.code == 200:
                self._ok(msg_id, sent_at)
            else:
                self.rejected[str(item.code)] += 1

    async def cmd_run(self, steps: list[tuple[float, float]], targets: list[str] | None = None) -> dict[str, Any]:
        """Offer ``rate`` messages/s for ``seconds``, for each (rate, seconds) step; targets at random
        (or exactly ``targets`` in order, once, as fast as the in-flight cap allows, when given)."""
        await self._open()
        if targets is not None:
            pos = 0
            while pos < len(targets):
                room = max(0, self.max_inflight - self.inflight)
                if room:
                    chunk = targets[pos : pos + min(room, REST_BATCH_MAX)]
                    await self._send(chunk)
                    self.sent += len(chunk)
                    pos += len(chunk)
                await asyncio.sleep(TICK_S)
        for rate, seconds in steps:
            start = time.monotonic()
            step_sent = 0
            while (elapsed := time.monotonic() - start) < seconds:
                n = min(int(rate * elapsed) - step_sent, max(0, self.max_inflight - self.inflight))
                if n > 0:
                    await self._send(random.choices(self.targets, k=n))
                    self.sent += n
                    step_sent += n
                await asyncio.sleep(TICK_S)
        await self._drained(60.0)
        return await self.cmd_stats()

    async def _drained(self, limit: float) -> None:
        """Wait (bounded) for the answers to everything in flight."""
        deadline = time.monotonic() + limit
        while self.inflight > 0 and time.monotonic() < deadline:  # noqa: ASYNC110 -- answers arrive in callbacks
            await asyncio.sleep(0.05)

    async def cmd_stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "accepted": len(self.accepted), "rejected": sum(self.rejected.values()),
                "inflight": self.inflight}  # fmt: skip

    async def cmd_report(self) -> dict[str, Any]:
        return {
            "accepted_ids": self.accepted,
            "rejected": dict(self.rejected),
            "accept_latency": self.accept_latency.export(),
            "accepted_per_second": dict(self.per_second),
        }

    async def cmd_reset(self, t0: float) -> None:
        self.accepted = []
        self.rejected = Counter()
        self.sent = 0
        self.t0 = t0
        self.accept_latency = Recorder(t0)
        self.per_second = Counter()

    async def cmd_close(self) -> None:
        for link in self._links:
            if link.transport is not None:
                link.transport.close()
        if self._http is not None:
            await self._http.close()
