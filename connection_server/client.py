"""The Python device SDK: one ``DeviceClient`` per simulated device.

It keeps a socket to a shard, reconnecting with exponential backoff and full
jitter (or after the server's ``reconnect`` delay hint), drops duplicate
pushes by apns-id (delivery is at-least-once), and acks every push after the
``on_push`` callback returned, batched every ``ack_delay_s``.

It speaks protocol v2 by default (``protocol_version=1`` for the old
behaviour): a power burst arrives as one ``batch`` frame, whose pushes are
handled one by one like single pushes.  ``wakeups`` counts the frames that
carried pushes, i.e. how often the server woke the device.

An exception raised by ``on_push`` does not stop the client: it is logged
(logger ``pushgw.client``, with the traceback), counted in
``handler_errors``, and the push is still acked.  An ack means "this device
received the push", as on iOS, where a crashing app does not make APNs
deliver again: not acking would make the server resend the same push on
every reconnect, and a handler that fails on it would never get past it.
Keep what must not be lost (a sync to do) in the app's own state, then
return from ``on_push``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from connection_server import frames as f

log = logging.getLogger("pushgw.client")

PushHandler = Callable[[f.Push], Awaitable[None] | None]

#: Close codes after which reconnecting cannot help, with the reason raised.
#: 4004: a newer connection of this device is alive (docs/protocol.md: "don't
#: reconnect from this connection"); reconnecting would replace it in turn,
#: and two clients with one identity would take the device from each other
#: for ever.
FATAL_CODES = {
    f.Close.BAD_CREDENTIAL: "BadCredential",
    f.Close.UNSUPPORTED_VERSION: "Unsupported",
    f.Close.REPLACED: "Replaced",
}


class DeviceError(Exception):
    """The server refused a request (``reason`` is its error string) or the device cannot connect."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason


def payload_of(push: f.Push) -> Any:
    return msgspec.json.decode(push.payload)


class DeviceClient:
    def __init__(
        self,
        url: str | Sequence[str],
        device_id: str,
        secret: str,
        *,
        on_push: PushHandler | None = None,
        on_overflow: Callable[[int], None] | None = None,
        ack_delay_s: float = 0.005,
        backoff_min_s: float = 0.1,
        backoff_max_s: float = 30.0,
        seen_cap: int = 4096,
        awake: bool = True,
        local_addr: tuple[str, int] | None = None,
        protocol_version: int = f.PROTOCOL_VERSION,
    ) -> None:
        # Several URLs (shards or regions): the next one is tried after each
        # lost connection, so a dead shard's devices move to a live one.
        self.urls = [url] if isinstance(url, str) else list(url)
        self._url_index = 0
        self.device_id = device_id
        self._secret = secret
        self._on_push = on_push
        self._on_overflow = on_overflow
        self.ack_delay_s = ack_delay_s
        self._backoff = (backoff_min_s, backoff_max_s)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_cap = seen_cap
        self._awake = awake
        self._local_addr = local_addr
        self.protocol_version = protocol_version
        self._ws: ClientConnection | None = None
        self._acks: list[int] = []
        self._ack_task: asyncio.Task[None] | None = None
        self._requests: dict[str, asyncio.Future[f.ServerFrame]] = {}
        self._rids = itertools.count(1)
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.epoch = 0
        self.connects = 0
        self.duplicates = 0
        self.wakeups = 0  # frames that carried pushes (one per socket write of the server)
        self.handler_errors = 0  # on_push calls that raised (logged; the push is acked anyway)
        self.last_close_code: int | None = None
        self.fatal: DeviceError | None = None

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_connected(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while not self._ready.is_set():
                if self.fatal is not None:
                    raise self.fatal
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), 0.05)
        if self.fatal is not None:
            raise self.fatal

    async def stop(self) -> None:
        self._stopped = True
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await self._send_acks(ws)
                await ws.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
        if self._ack_task is not None:
            self._ack_task.cancel()

    async def drop(self) -> None:
        """Close the socket abruptly (tests): the client reconnects by itself."""
        ws = self._ws
        if ws is not None and ws.transport is not None:
            ws.transport.abort()

    @property
    def url(self) -> str:
        return self.urls[self._url_index]

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    # -- requests ------------------------------------------------------------------

    async def register(self, topic: str, environment: str = "production") -> str:
        reply = await self._request(lambda rid: f.Register(topic=topic, environment=environment, rid=rid))  # type: ignore[arg-type]
        assert isinstance(reply, f.Registered)
        return reply.token

    async def unregister(self, token: str) -> int:
        reply = await self._request(lambda rid: f.Unregister(token=token, rid=rid))
        assert isinstance(reply, f.Unregistered)
        return reply.at_ms

    async def set_awake(self, awake: bool) -> None:
        self._awake = awake
        if self._ws is not None:
            await self._ws.send(f.encode(f.State(awake=awake)), text=True)

    async def set_quiet_hours(self, start: str | None, end: str | None = None, tz: str | None = None) -> f.QuietSet:
        """Set the device's quiet hours ("HH:MM", "HH:MM", IANA zone), or clear them
        with ``set_quiet_hours(None)``.  Protocol v2."""
        reply = await self._request(lambda rid: f.Quiet(start=start, end=end, tz=tz, rid=rid))
        assert isinstance(reply, f.QuietSet)
        return reply

    async def _request(self, build: Callable[[str], f.ClientFrame], timeout: float = 10.0) -> f.ServerFrame:
        await self.wait_connected(timeout)
        rid = str(next(self._rids))
        fut: asyncio.Future[f.ServerFrame] = asyncio.get_running_loop().create_future()
        self._requests[rid] = fut
        try:
            assert self._ws is not None
            await self._ws.send(f.encode(build(rid)), text=True)
            reply = await asyncio.wait_for(fut, timeout)
        finally:
            self._requests.pop(rid, None)
        if isinstance(reply, f.Error):
            raise DeviceError(reply.reason, reply.message)
        return reply

    # -- the connection loop -----------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stopped:
            hint_ms: int | None = None
            try:
                async with connect(
                    # v2 batch frames may reach 512 KiB (docs/protocol.md).
                    self.url, compression=None, max_size=1024 * 1024, open_timeout=10, close_timeout=2,
                    ping_interval=None, local_addr=self._local_addr,
                ) as ws:  # fmt: skip
                    hello = f.Hello(
                        device_id=self.device_id, secret=self._secret, awake=self._awake, v=self.protocol_version
                    )
                    await ws.send(f.encode(hello), text=True)
                    welcome = f.decode_server(await ws.recv())
                    if not isinstance(welcome, f.Welcome):
                        raise DeviceError("Protocol", "expected welcome")
                    self._ws, self.epoch = ws, welcome.epoch
                    self.connects += 1
                    attempt = 0
                    self._ready.set()
                    async for data in ws:
                        frame = f.decode_server(data)
                        if isinstance(frame, f.Reconnect):
                            hint_ms = frame.delay_ms
                        else:
                            await self._handle(ws, frame)
            except ConnectionClosed as exc:
                self.last_close_code = exc.rcvd.code if exc.rcvd is not None else None
            except (OSError, InvalidHandshake, TimeoutError, f.FrameError, DeviceError):
                pass
            finally:
                self._ready.clear()
                self._ws = None
                self._acks.clear()  # unacked pushes are redelivered on the next connection
                if self._ack_task is not None:  # it belongs to the dead socket
                    self._ack_task.cancel()
                    self._ack_task = None
            if self._ws is None and self.last_close_code in FATAL_CODES:
                self.fatal = DeviceError(FATAL_CODES[self.last_close_code])
                return
            if self._stopped:
                return
            self._url_index = (self._url_index + 1) % len(self.urls)
            if hint_ms is not None:
                delay = hint_ms / 1000 * random.uniform(0.5, 1.5)  # spread a shard's devices out
            else:
                lo, hi = self._backoff
                delay = random.uniform(0, min(hi, lo * 2**attempt))  # full jitter
                attempt += 1
            await asyncio.sleep(delay)

    async def _handle(self, ws: ClientConnection, frame: f.ServerFrame) -> None:
        if isinstance(frame, f.Push):
            self.wakeups += 1
            await self._push(ws, frame)
        elif isinstance(frame, f.Batch):
            self.wakeups += 1
            for push in frame.pushes:
                await self._push(ws, push)
        elif isinstance(frame, f.Overflow):
            if self._on_overflow is not None:
                self._on_overflow(frame.dropped)
        elif isinstance(frame, f.Registered | f.Unregistered | f.Error | f.QuietSet):
            fut = self._requests.get(frame.rid)
            if fut is not None and not fut.done():
                fut.set_result(frame)

    async def _push(self, ws: ClientConnection, frame: f.Push) -> None:
        if frame.apns_id in self._seen:
            self.duplicates += 1
        else:
            self._seen[frame.apns_id] = None
            if len(self._seen) > self._seen_cap:
                self._seen.popitem(last=False)
            if self._on_push is not None:
                await self._call_handler(frame)
        self._acks.append(frame.id)
        if self._ack_task is None or self._ack_task.done():
            self._ack_task = asyncio.get_running_loop().create_task(self._ack_soon(ws))

    async def _call_handler(self, frame: f.Push) -> None:
        assert self._on_push is not None
        try:
            result = self._on_push(frame)
            if inspect.isawaitable(result):
                await result
        except Exception:  # the app's bug must not end the connection loop (see the module doc)
            self.handler_errors += 1
            log.exception("on_push raised for apns-id %s; the push is acked and the client goes on", frame.apns_id)

    async def _ack_soon(self, ws: ClientConnection) -> None:
        await asyncio.sleep(self.ack_delay_s)
        with contextlib.suppress(ConnectionClosed):
            await self._send_acks(ws)

    async def _send_acks(self, ws: ClientConnection) -> None:
        while self._acks:
            batch = self._acks[: f.MAX_ACK_IDS]
            del self._acks[: f.MAX_ACK_IDS]
            await ws.send(f.encode(f.Ack(ids=batch)), text=True)
