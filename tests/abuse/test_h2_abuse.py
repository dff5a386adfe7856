"""HTTP/2 abuse against the real APNs listener (`pushgw serve`).

Each attack ends with the connection closed by a GOAWAY carrying the error
code RFC 9113 names for it (or, for stream floods, the surplus streams
refused), while a well-behaved provider connection opened before the attack
keeps getting its pushes answered 200, and the server's memory stays bounded.
"""

from __future__ import annotations

import asyncio
import sqlite3
import struct
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import jwt
import pytest
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from tests.abuse.served import BUNDLE, TEAM, Served
from tests.fault.sizes import size
from tests.integration.h2_helpers import H2Client, push_headers

MAX_STREAMS = 50  # h2_max_concurrent_streams for this server: small floods suffice


@pytest.fixture(scope="module")
def h2_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    srv = Served(tmp_path_factory.mktemp("h2"), PUSHGW_H2_MAX_CONCURRENT_STREAMS=str(MAX_STREAMS))
    srv.provision()
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def provider_jwt(srv: Served) -> str:
    return jwt.encode({"iss": TEAM, "iat": _now()},
                      srv.key["private_key_p8"], algorithm="ES256", headers={"kid": srv.key["key_id"]})  # fmt: skip


def _now() -> int:
    import time

    return int(time.time())


class Provider:
    """An authenticated h2 connection with a device token to push to."""

    def __init__(self, srv: Served, client: H2Client, token: str) -> None:
        self.srv, self.client, self.token = srv, client, token
        self.jwt = provider_jwt(srv)

    @classmethod
    async def open(cls, srv: Served, token: str, rude: bool = False) -> Provider:
        p = cls(srv, await H2Client.connect(srv.h2, rude=rude), token)
        await p.push_ok()  # the first valid token opens the stream limit
        async with asyncio.timeout(10):
            while p.client.max_streams != MAX_STREAMS:
                p.client.settings_seen.clear()
                await p.client.settings_seen.wait()
        return p

    def headers(self) -> list[tuple[str, str]]:
        return push_headers(self.jwt, BUNDLE, apns_id=str(uuid.uuid4()))

    async def push_ok(self) -> None:
        r = await self.client.request(f"/3/device/{self.token}", self.headers())
        assert r.status == 200, (r.status, r.body)


@pytest.fixture
async def token(h2_server: Served) -> str:
    async with aiohttp.ClientSession() as http:
        return (await h2_server.device(http))[2]


@pytest.fixture
async def bystander(h2_server: Served, token: str) -> AsyncIterator[Provider]:
    p = await Provider.open(h2_server, token)
    try:
        yield p
    finally:
        p.client.close()


async def _goaway(client: H2Client) -> int:
    """The error code of the server's GOAWAY; the connection is closed after it."""
    async with asyncio.timeout(10):
        await client.lost.wait()
    assert client.goaway is not None, "closed without a GOAWAY"
    return int(client.goaway.error_code)


def _frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", stream) + payload


async def test_malformed_frame_gets_goaway_protocol_error(h2_server: Served, bystander: Provider) -> None:
    c = await H2Client.connect(h2_server.h2)
    assert c.transport is not None
    c.transport.write(_frame(0x0, 0x1, 0, b"x"))  # DATA on stream 0 (RFC 9113 6.1)
    assert await _goaway(c) == ErrorCodes.PROTOCOL_ERROR
    await bystander.push_ok()


async def test_bad_settings_frame_gets_goaway_frame_size_error(h2_server: Served, bystander: Provider) -> None:
    c = await H2Client.connect(h2_server.h2)
    assert c.transport is not None
    c.transport.write(_frame(0x4, 0x0, 0, b"\x00\x03\x00"))  # SETTINGS, length not a multiple of 6
    assert await _goaway(c) == ErrorCodes.FRAME_SIZE_ERROR
    await bystander.push_ok()


async def test_continuation_flood_gets_goaway(h2_server: Served, bystander: Provider) -> None:
    """HEADERS without END_HEADERS, then CONTINUATION frames forever (CVE-2024-27316 style)."""
    c = await H2Client.connect(h2_server.h2)
    assert c.transport is not None
    rss = h2_server.rss_kib()
    c.transport.write(_frame(0x1, 0x0, 1, b"\x82"))  # HEADERS, :method GET, no END_HEADERS
    # A burst past h2's bound (64 CONTINUATION frames), then silence, so that
    # the GOAWAY is not lost to a reset of a socket with unread input.
    for _ in range(size("continuation_frames", 100)):
        c.transport.write(_frame(0x9, 0x0, 1, b"\x00" * 1000))
    assert await _goaway(c) == ErrorCodes.PROTOCOL_ERROR
    assert h2_server.rss_kib() - rss < 8192, "the header block was buffered without bound"
    await bystander.push_ok()


async def test_huge_header_list_gets_goaway_enhance_your_calm(h2_server: Served, bystander: Provider) -> None:
    c = await H2Client.connect(h2_server.h2)
    c.start(f"/3/device/{bystander.token}", [*bystander.headers(), ("x-big", "v" * 12000)])
    assert await _goaway(c) == ErrorCodes.ENHANCE_YOUR_CALM  # over the advertised MAX_HEADER_LIST_SIZE
    await bystander.push_ok()


async def test_too_many_streams_are_refused_and_the_connection_survives(h2_server: Served, bystander: Provider) -> None:
    p = await Provider.open(h2_server, bystander.token, rude=True)
    assert p.client.transport is not None
    opened = []
    for _ in range(MAX_STREAMS + 20):  # headers only: each stream stays open
        sid = p.client.h2.get_next_available_stream_id()
        p.client.h2.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":path", f"/3/device/{p.token}"),
                                       (":authority", "api.push.apple.com"), *p.headers()])  # fmt: skip
        opened.append(sid)
        p.client.done[sid] = asyncio.get_running_loop().create_future()
    p.client.transport.write(p.client.h2.data_to_send())
    refused = opened[MAX_STREAMS:]
    async with asyncio.timeout(10):
        results = await asyncio.gather(*(p.client.done[sid] for sid in refused))
    assert {r.reset for r in results} == {ErrorCodes.REFUSED_STREAM}
    for sid in opened[:MAX_STREAMS]:
        p.client.h2.reset_stream(sid, ErrorCodes.CANCEL)
    p.client.transport.write(p.client.h2.data_to_send())
    await p.push_ok()  # the same connection still works
    await bystander.push_ok()
    p.client.close()


def _rows(srv: Served) -> int:
    with sqlite3.connect(f"file:{srv.data_dir}/pushgw.sqlite3?mode=ro", uri=True) as db:
        return int(db.execute("SELECT count(*) FROM notifications").fetchone()[0])


async def test_rapid_reset_gets_goaway_and_bounded_work(h2_server: Served, bystander: Provider) -> None:
    """Streams opened and reset at once (CVE-2023-44487): the work done is
    bounded by the stream limit and the connection is closed with ENHANCE_YOUR_CALM."""
    p = await Provider.open(h2_server, bystander.token, rude=True)
    assert p.client.transport is not None
    before = _rows(h2_server)
    attempts = size("rapid_resets", 3000)
    body = b'{"aps":{"alert":"reset"}}'
    for n in range(attempts):
        if p.client.goaway is not None or p.client.lost.is_set():
            break
        sid = p.client.h2.get_next_available_stream_id()
        p.client.h2.send_headers(sid, [(":method", "POST"), (":scheme", "https"),
                                       (":path", f"/3/device/{p.token}"), (":authority", "api.push.apple.com"),
                                       *p.headers()])  # fmt: skip
        p.client.h2.send_data(sid, body, end_stream=True)
        p.client.h2.reset_stream(sid, ErrorCodes.CANCEL)
        if n % 50 == 49:
            p.client.transport.write(p.client.h2.data_to_send())
            await asyncio.sleep(0)
    assert await _goaway(p.client) == ErrorCodes.ENHANCE_YOUR_CALM
    await asyncio.sleep(0.5)
    accepted = _rows(h2_server) - before
    assert accepted < attempts / 2, f"{accepted} of {attempts} reset requests were processed"
    await bystander.push_ok()


async def test_slow_reader_gets_its_surplus_streams_refused(h2_server: Served, bystander: Provider) -> None:
    """A peer that never opens its receive window: answers with bodies wait,
    and they count against the stream limit (no unbounded queue of bodies)."""
    p = await Provider.open(h2_server, bystander.token, rude=True)
    assert p.client.transport is not None
    # Close the peer's windows: SETTINGS_INITIAL_WINDOW_SIZE=0 for new streams.
    p.client.h2.update_settings({SettingCodes.INITIAL_WINDOW_SIZE: 0})
    p.client.transport.write(p.client.h2.data_to_send())
    await asyncio.sleep(0.2)
    futs = []
    for _ in range(MAX_STREAMS * 4):
        # A bad token: answered 400 with a JSON body the closed window holds back.
        futs.append(p.client.start("/3/device/" + "00" * 32, p.headers()))
        await asyncio.sleep(0)
    await asyncio.sleep(1.0)
    resets = sum(1 for r in p.client.responses.values() if r.reset == ErrorCodes.REFUSED_STREAM)
    held = sum(1 for r in p.client.responses.values() if r.status == 400 and r.reset is None)
    assert held <= MAX_STREAMS, f"{held} answers queued behind a closed window"
    assert resets >= MAX_STREAMS * 3 - held
    await bystander.push_ok()
    p.client.close()
    for fut in futs:
        fut.cancel()
