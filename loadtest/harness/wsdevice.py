"""A minimal pushgw device on ``asyncio.Protocol``: cheap enough that 20,000 fit one load process.

The SDK's ``DeviceClient`` (websockets, a task per device, dedupe by apns-id)
costs the load generator more CPU than the server spends, and its dedupe
would hide the duplicates this harness must count.  This speaks just enough
RFC 6455 and docs/protocol.md: upgrade, ``hello``, ``welcome``, ``push``,
``ack``, ping/pong and close.  Client frames carry the all-zero mask key (a
valid key that makes masking a no-op).  Acks for everything that arrived in
one read go out in one frame at the end of that read.
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
from typing import Any, Protocol, cast

import msgspec


class _Frame(msgspec.Struct):
    type: str
    id: int = 0
    apns_id: str = ""
    payload: msgspec.Raw = msgspec.Raw(b"{}")


_decode_frame = msgspec.json.Decoder(_Frame).decode


class Sink(Protocol):
    def on_ready(self, dev: Any) -> None: ...
    def on_message(self, dev: Any, msg_id: str, payload: bytes) -> bool: ...
    def on_lost(self, dev: Any, was_ready: bool) -> None: ...


def ws_frame(opcode: int, data: bytes) -> bytes:
    n = len(data)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + data


class WsDevice(asyncio.Protocol):
    __slots__ = (
        "buf",
        "close_code",
        "closing",
        "hello",
        "host_header",
        "index",
        "ready",
        "received",
        "sink",
        "transport",
        "upgraded",
    )  # fmt: skip

    def __init__(self, sink: Sink, index: int, device_id: str, secret: str, host: str) -> None:
        self.sink = sink
        self.index = index
        self.hello = ws_frame(
            1,
            b'{"type":"hello","v":1,"device_id":"%s","secret":"%s","awake":true}'
            % (device_id.encode(), secret.encode()),
        )
        self.host_header = host
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.upgraded = False
        self.ready = False
        self.closing = False
        self.close_code: int | None = None
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = tr = cast(asyncio.Transport, transport)
        key = base64.b64encode(os.urandom(16)).decode()
        tr.write(
            (
                f"GET /v1/connect HTTP/1.1\r\nHost: {self.host_header}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.close_code = -int(buf[9:12] or b"0")
                self.abort()
                return
            self.upgraded = True
            buf = buf[end + 4 :]
            assert self.transport is not None
            self.transport.write(self.hello)
        acks: list[int] = []
        drop_socket = False
        pos, n = 0, len(buf)
        while n - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1] & 0x7F
            head = 2
            if b1 == 126:
                if n - pos < 4:
                    break
                b1 = struct.unpack_from("!H", buf, pos + 2)[0]
                head = 4
            elif b1 == 127:
                if n - pos < 10:
                    break
                b1 = struct.unpack_from("!Q", buf, pos + 2)[0]
                head = 10
            if n - pos < head + b1:
                break
            body = buf[pos + head : pos + head + b1]
            pos += head + b1
            opcode = b0 & 0x0F
            if opcode == 1:
                frame = _decode_frame(body)
                if frame.type == "push":
                    self.received += 1
                    if self.sink.on_message(self, frame.apns_id, bytes(frame.payload)):
                        acks.append(frame.id)
                    else:  # fault injection: leave it unacked and drop the socket
                        drop_socket = True
                elif frame.type == "welcome":
                    self.ready = True
                    self.sink.on_ready(self)
            elif opcode == 9:
                self._send(0xA, body)
            elif opcode == 8:
                self.close_code = struct.unpack("!H", body[:2])[0] if len(body) >= 2 else 1005
                self.abort()
                return
        self.buf = buf[pos:]
        if acks:
            self._send(1, b'{"type":"ack","ids":[%s]}' % ",".join(map(str, acks)).encode())
        if drop_socket and self.transport is not None:
            self.transport.close()  # after the acks above are flushed

    def _send(self, opcode: int, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(ws_frame(opcode, data))

    def close(self) -> None:
        """Clean close (the device goes offline on purpose)."""
        self.closing = True
        self._send(8, struct.pack("!H", 1000))
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        was_ready, self.ready = self.ready, False
        self.upgraded = False
        self.buf = b""
        self.sink.on_lost(self, was_ready)
