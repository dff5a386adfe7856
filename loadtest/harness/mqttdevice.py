"""A minimal MQTT 3.1.1 client on ``asyncio.Protocol``: subscriber devices and a QoS 1 publisher.

Enough of the protocol for the side-by-side with Mosquitto and no more:
CONNECT (persistent session for devices), SUBSCRIBE at QoS 1, PUBLISH at
QoS 1 with PUBACK both ways, DISCONNECT.  Keepalive is 0 (off), like the
pushgw devices whose pings the server drives.  PUBACKs for everything in one
read go out in one write.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import Any, cast

from loadtest.harness.wsdevice import Sink


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: bytes) -> bytes:
    return struct.pack("!H", len(s)) + s


def packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _varint(len(body)) + body


def connect_packet(client_id: str, clean: bool) -> bytes:
    flags = 0x02 if clean else 0x00
    return packet(0x10, _str(b"MQTT") + bytes((4, flags)) + struct.pack("!H", 0) + _str(client_id.encode()))


def publish_qos1(topic: bytes, pid: int, payload: bytes) -> bytes:
    return packet(0x32, _str(topic) + struct.pack("!H", pid) + payload)


class _Reader:
    """Splits a byte stream into (first byte, body) packets."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf + data if self.buf else data
        out: list[tuple[int, bytes]] = []
        pos, n = 0, len(buf)
        while n - pos >= 2:
            mult, length, i = 1, 0, pos + 1
            while True:
                if i >= n:
                    self.buf = buf[pos:]
                    return out
                byte = buf[i]
                length += (byte & 0x7F) * mult
                mult *= 128
                i += 1
                if not byte & 0x80:
                    break
            if n - i < length:
                break
            out.append((buf[pos], buf[i : i + length]))
            pos = i + length
        self.buf = buf[pos:]
        return out


class MqttDevice(asyncio.Protocol):
    """A device: persistent session ``d<index>``, subscribed to ``d/<index>`` at QoS 1."""

    __slots__ = (
        "client_id",
        "close_code",
        "closing",
        "index",
        "reader",
        "ready",
        "received",
        "sink",
        "topic",
        "transport",
    )  # fmt: skip

    def __init__(self, sink: Sink, index: int, client_id: str) -> None:
        self.sink = sink
        self.index = index
        self.client_id = client_id
        self.topic = b"d/" + client_id.encode()
        self.transport: asyncio.Transport | None = None
        self.reader = _Reader()
        self.ready = False
        self.closing = False
        self.received = 0
        self.close_code: int | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tr = cast(asyncio.Transport, transport)
        tr.write(connect_packet(self.client_id, clean=False))

    def data_received(self, data: bytes) -> None:
        acks = []
        for first, body in self.reader.feed(data):
            kind = first >> 4
            if kind == 3:  # PUBLISH
                tlen = struct.unpack_from("!H", body)[0]
                qos = (first >> 1) & 3
                if qos:
                    pid = body[2 + tlen : 4 + tlen]
                    acks.append(b"\x40\x02" + pid)
                    payload = body[4 + tlen :]
                else:
                    payload = body[2 + tlen :]
                self.received += 1
                self.sink.on_message(self, "", payload)
            elif kind == 2:  # CONNACK
                if body[1] != 0:
                    self.close_code = -body[1]
                    self.abort()
                    return
                if body[0] & 1:  # session present: the subscription is still there
                    self._ready()
                else:
                    self.transport.write(packet(0x82, struct.pack("!H", 1) + _str(self.topic) + b"\x01"))  # type: ignore[union-attr]
            elif kind == 9:  # SUBACK
                self._ready()
        if acks and self.transport is not None:
            self.transport.write(b"".join(acks))

    def _ready(self) -> None:
        if not self.ready:
            self.ready = True
            self.sink.on_ready(self)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.write(b"\xe0\x00")
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        was_ready, self.ready = self.ready, False
        self.reader = _Reader()
        self.sink.on_lost(self, was_ready)


class MqttPublisher(asyncio.Protocol):
    """The provider side: QoS 1 publishes; ``on_ack(msg_id)`` when the broker's PUBACK arrives."""

    def __init__(self, on_ack: Callable[[Any], None]) -> None:
        self.on_ack = on_ack
        self.transport: asyncio.Transport | None = None
        self.reader = _Reader()
        self.inflight: dict[int, Any] = {}
        self.next_pid = 0
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tr = cast(asyncio.Transport, transport)
        tr.write(connect_packet(f"pub-{id(self):x}", clean=True))

    def publish(self, topic: bytes, payload: bytes, token: Any) -> bool:
        """False when all 65,535 packet ids are in flight (the caller backs off)."""
        if len(self.inflight) >= 65_000 or self.transport is None:
            return False
        while True:
            self.next_pid = self.next_pid % 65535 + 1
            if self.next_pid not in self.inflight:
                break
        self.inflight[self.next_pid] = token
        self.transport.write(publish_qos1(topic, self.next_pid, payload))
        return True

    def data_received(self, data: bytes) -> None:
        for first, body in self.reader.feed(data):
            kind = first >> 4
            if kind == 4:
                token = self.inflight.pop(struct.unpack_from("!H", body)[0], None)
                if token is not None:
                    self.on_ack(token)
            elif kind == 2 and not self.connected.done():
                self.connected.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.connected.done():
            self.connected.set_exception(ConnectionError("publisher lost its connection"))
