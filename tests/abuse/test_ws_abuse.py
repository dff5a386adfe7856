"""WebSocket abuse against a real shard (`pushgw serve`).

Each abusive socket is closed with the code docs/protocol.md documents, and
a well-behaved device connected to the same shard the whole time keeps
receiving pushes (and its acks keep being recorded) -- the bad socket harms
nobody else.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from connection_server import frames as f
from connection_server.client import DeviceClient
from tests.abuse.served import Served
from tests.fault.sizes import size

HELLO_TIMEOUT_S = 1


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    # drain_window 4: the shard's write bound per socket is its floor, 256 KiB.
    srv = Served(tmp_path_factory.mktemp("ws"), PUSHGW_HELLO_TIMEOUT_S=str(HELLO_TIMEOUT_S),
                 PUSHGW_ACK_FLUSH_MS="2", PUSHGW_DRAIN_WINDOW="4")  # fmt: skip
    srv.provision()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


class Bystander:
    def __init__(self, srv: Served, http: aiohttp.ClientSession, dev: tuple[str, str, str]) -> None:
        self.srv, self.http = srv, http
        self.device_id, self.secret, self.token = dev
        self.got: list[str] = []
        self.client = DeviceClient(srv.ws_url, self.device_id, self.secret, on_push=self._on_push)
        self._arrived = asyncio.Event()

    def _on_push(self, push: f.Push) -> None:
        self.got.append(push.apns_id)
        self._arrived.set()

    async def still_served(self) -> None:
        """A push to the bystander arrives, and its ack is recorded."""
        assert self.client.connected and self.client.connects == 1, "the bystander was never disconnected"
        apns_id = await self.srv.send(self.http, self.token)
        async with asyncio.timeout(10):
            while apns_id not in self.got:
                self._arrived.clear()
                await self._arrived.wait()
            status = await self.srv.status(self.http, apns_id)
            while status != "delivered":  # the ack is flushed within ack_flush_ms
                await asyncio.sleep(0.05)
                status = await self.srv.status(self.http, apns_id)


@pytest.fixture
async def bystander(shard: Served) -> AsyncIterator[Bystander]:
    async with aiohttp.ClientSession() as http:
        b = Bystander(shard, http, await shard.device(http))
        b.client.start()
        await b.client.wait_connected(10)
        try:
            yield b
        finally:
            await b.client.stop()


async def _hello(srv: Served, http: aiohttp.ClientSession) -> ClientConnection:
    device_id, secret, _ = await srv.device(http)
    ws = await websockets.connect(srv.ws_url, max_size=None, ping_interval=None, compression=None)
    await ws.send(f.encode(f.Hello(device_id=device_id, secret=secret)).decode())
    assert isinstance(f.decode_server(await ws.recv()), f.Welcome)
    return ws


async def _close_code(ws: ClientConnection, timeout: float = 10) -> int | None:
    async with asyncio.timeout(timeout):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


async def test_oversized_frame_closes_with_1009(shard: Served, bystander: Bystander) -> None:
    ws = await _hello(shard, bystander.http)
    await ws.send('{"type":"ack","ids":[' + "1," * 20000 + "1]}")
    assert await _close_code(ws) == f.Close.TOO_BIG
    await bystander.still_served()


async def test_invalid_utf8_closes_with_1007(shard: Served, bystander: Bystander) -> None:
    ws = await _hello(shard, bystander.http)
    await ws.send(b'{"type":"state","awake":true,"x":"\xff\xfe"}', text=True)
    assert await _close_code(ws) == 1007
    await bystander.still_served()


async def test_binary_frame_closes_with_4002(shard: Served, bystander: Bystander) -> None:
    ws = await _hello(shard, bystander.http)
    await ws.send(b'{"type":"state","awake":true}')  # valid JSON, but binary
    assert await _close_code(ws) == f.Close.BAD_FRAME
    await bystander.still_served()


async def test_garbage_before_hello_closes_with_4002(shard: Served, bystander: Bystander) -> None:
    async with websockets.connect(shard.ws_url) as ws:
        await ws.send("{not json")
        assert await _close_code(ws) == f.Close.BAD_FRAME
    await bystander.still_served()


async def test_out_of_range_ack_ids_close_only_that_socket(shard: Served, bystander: Bystander) -> None:
    """Found by the decoder property test: an ack id past BIGINT made the shard's
    batched ack statement fail for every device in the batch, forever."""
    ws = await _hello(shard, bystander.http)
    await ws.send('{"type":"ack","ids":[9223372036854775808]}')
    assert await _close_code(ws) == f.Close.BAD_FRAME
    await bystander.still_served()


async def test_silent_socket_is_closed_by_the_hello_timeout(shard: Served, bystander: Bystander) -> None:
    sockets = [await websockets.connect(shard.ws_url, ping_interval=None) for _ in range(20)]
    codes = await asyncio.gather(*(_close_code(ws, HELLO_TIMEOUT_S + 10) for ws in sockets))
    assert codes == [f.Close.HELLO_TIMEOUT] * len(sockets)
    await bystander.still_served()


async def test_wrong_secret_closes_with_4001(shard: Served, bystander: Bystander) -> None:
    async with websockets.connect(shard.ws_url) as ws:
        await ws.send(f.encode(f.Hello(device_id=bystander.device_id, secret="not-the-secret")).decode())
        assert await _close_code(ws) == f.Close.BAD_CREDENTIAL
    await bystander.still_served()


def _sysctl_max(name: str) -> int:
    with open(f"/proc/sys/net/ipv4/{name}") as f:
        return int(f.read().split()[2])


async def test_ping_flood_keeps_the_shard_memory_bounded(shard: Served, bystander: Bystander) -> None:
    """Pings whose pongs are never read: the shard's memory stays bounded (the
    flooder is dropped or its pongs stay in the kernel), the bystander is served."""
    # More pongs than the kernel can hold for an unread socket (the client's receive
    # buffer may autotune up to tcp_rmem's maximum, the shard's send buffer up to
    # tcp_wmem's): only then must the shard's own buffer pass its cap.  100,000
    # pongs (12.6 MB) were 1.26 x that with Debian's 6 + 4 MiB; some kernels allow
    # 32 MiB receive buffers, where all of them fit in the kernel.
    kernel_bytes = _sysctl_max("tcp_rmem") + _sysctl_max("tcp_wmem")
    pings = max(size("ping_flood", 100_000), kernel_bytes * 3 // 2 // 126)
    rss_before = shard.rss_kib()
    ws = await _hello(shard, bystander.http)
    ws.transport.pause_reading()  # the flooder never reads a pong
    filler = os.urandom(116)
    try:
        for i in range(pings):
            await ws.ping(i.to_bytes(4, "big") + filler)  # websockets never waits for the pong here
    except ConnectionClosed:
        pass
    await asyncio.sleep(0.5)
    await bystander.still_served()
    grown_kib = shard.rss_kib() - rss_before
    # 100,000 pongs of 126 bytes are ~12 MiB if the shard buffered them all (it
    # did before the fix: +17 MiB); the bound is the write cap (256 KiB here),
    # the rest is allocator noise (up to ~5 MiB seen on the loaded machine).
    assert grown_kib < 8192, f"shard grew {grown_kib} KiB under a ping flood of {pings}"
    assert ws.state is State.CLOSED, "the flooder was dropped"
