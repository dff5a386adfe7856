"""A small HTTP/2 (h2c, prior knowledge) client for the APNs-style provider API.

One connection, many streams; requests beyond the server's
``SETTINGS_MAX_CONCURRENT_STREAMS`` wait in a queue.  ``on_done(token,
status)`` runs when a response stream ends.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.events


class H2Client(asyncio.Protocol):
    def __init__(self, authority: str, on_done: Callable[[Any, int], None]) -> None:
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.authority = authority.encode()
        self.on_done = on_done
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, list[Any]] = {}  # stream id -> [token, status]
        self.queue: deque[tuple[bytes, list[tuple[bytes, bytes]], bytes, Any]] = deque()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(1 << 24)
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def post(self, path: bytes, headers: list[tuple[bytes, bytes]], body: bytes, token: Any) -> None:
        self.queue.append((path, headers, body, token))
        self._pump()
        self._flush()

    def _pump(self) -> None:
        limit = self.conn.remote_settings.max_concurrent_streams
        while self.queue and len(self.streams) < limit:
            path, headers, body, token = self.queue.popleft()
            sid = self.conn.get_next_available_stream_id()
            self.conn.send_headers(
                sid,
                [(b":method", b"POST"), (b":scheme", b"http"), (b":authority", self.authority), (b":path", path),
                 *headers, (b"content-length", str(len(body)).encode())],
            )  # fmt: skip
            self.conn.send_data(sid, body, end_stream=True)
            self.streams[sid] = [token, 0]

    def data_received(self, data: bytes) -> None:
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                entry = self.streams.get(event.stream_id)
                if entry is not None:
                    for name, value in event.headers:
                        if name == b":status":
                            entry[1] = int(value)
            elif isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                entry = self.streams.pop(event.stream_id, None)
                if entry is not None:
                    self.on_done(entry[0], entry[1])
            elif isinstance(event, h2.events.RemoteSettingsChanged) and not self.ready.done():
                self.ready.set_result(None)
        self._pump()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for token, _status in self.streams.values():
            self.on_done(token, 0)
        self.streams.clear()
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("h2 connection lost"))
