"""Device side: a device acts only as itself, inside its own app.

Against a real `pushgw serve` with two apps: a device cannot authenticate as
another (its own secret, another's id), cannot register tokens for topics of
another app, cannot unregister another device's token, never sees another
device's pushes, and its acks of another device's push ids change nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import websockets

from connection_server import frames as f
from connection_server.client import DeviceClient, DeviceError
from tests.abuse.served import BUNDLE, Served, until

OTHER_TEAM, OTHER_BUNDLE = "OTHERTEAM1", "com.example.other"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    s = Served(tmp_path_factory.mktemp("device"), PUSHGW_ACK_FLUSH_MS="2")
    s.provision()
    s.cli("team", "create", "--team-id", OTHER_TEAM)
    s.cli("app", "create", "--team-id", OTHER_TEAM, "--bundle-id", OTHER_BUNDLE)
    s.start()
    try:
        yield s
    finally:
        s.stop()


class Phone:
    def __init__(self, srv: Served, creds: tuple[str, str, str]) -> None:
        self.device_id, self.secret, self.token = creds
        self.got: list[f.Push] = []
        self.client = DeviceClient(srv.ws_url, self.device_id, self.secret, on_push=self.got.append,
                                   ack_delay_s=3600.0)  # fmt: skip

    @property
    def ids(self) -> set[str]:
        return {p.apns_id for p in self.got}


@pytest.fixture
async def phones(srv: Served) -> AsyncIterator[tuple[Phone, Phone, aiohttp.ClientSession]]:
    async with aiohttp.ClientSession() as http:
        a, b = Phone(srv, await srv.device(http)), Phone(srv, await srv.device(http))
        for p in (a, b):
            p.client.start()
            await p.client.wait_connected(10)
        try:
            yield a, b, http
        finally:
            for p in (a, b):
                await p.client.stop()


async def _close_code(ws: websockets.ClientConnection) -> int | None:
    async with asyncio.timeout(10):
        try:
            while True:
                await ws.recv()
        except websockets.ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


async def test_a_device_cannot_authenticate_as_another(
    srv: Served, phones: tuple[Phone, Phone, aiohttp.ClientSession]
) -> None:
    a, b, _ = phones
    for device_id, secret in ((b.device_id, a.secret), (b.device_id, ""), (b.device_id + "x", b.secret)):
        async with websockets.connect(srv.ws_url) as ws:
            await ws.send(json.dumps({"type": "hello", "device_id": device_id, "secret": secret}))
            assert await _close_code(ws) in (f.Close.BAD_CREDENTIAL, f.Close.BAD_FRAME)
    assert b.client.connected and b.client.connects == 1, "B's own session was not replaced"


async def test_a_device_registers_only_its_own_apps_topics(phones: tuple[Phone, Phone, aiohttp.ClientSession]) -> None:
    a, _, _ = phones
    for topic in (OTHER_BUNDLE, OTHER_BUNDLE + ".voip", BUNDLE + "x", BUNDLE + ".voip.extra", "com.example"):
        with pytest.raises(DeviceError) as err:
            await a.client.register(topic)
        assert err.value.reason == "TopicDisallowed"
    assert await a.client.register(BUNDLE + ".voip")  # its own app's suffix is fine
    assert a.client.connected


async def test_a_device_cannot_unregister_another_devices_token(
    srv: Served, phones: tuple[Phone, Phone, aiohttp.ClientSession]
) -> None:
    a, b, http = phones
    with pytest.raises(DeviceError) as err:
        await a.client.unregister(b.token)
    assert err.value.reason == "BadDeviceToken"
    apns_id = await srv.send(http, b.token)  # B's token still works
    await until(lambda: apns_id in b.ids, what="B's push")


async def test_pushes_and_acks_stay_with_their_device(
    srv: Served, phones: tuple[Phone, Phone, aiohttp.ClientSession]
) -> None:
    a, b, http = phones
    to_b = [await srv.send(http, b.token) for _ in range(5)]
    await until(lambda: set(to_b) <= b.ids, what="B's pushes")
    assert not a.ids & set(to_b), "A saw B's pushes"
    # A acks B's push ids (it can guess them: they are sequential): nothing changes.
    ws = a.client._ws  # a raw frame no honest SDK sends
    assert ws is not None
    b_ids = [p.id for p in b.got]
    await ws.send(f.encode(f.Ack(ids=b_ids)).decode())
    await asyncio.sleep(0.5)  # several ack flushes
    assert {await srv.status(http, i) for i in to_b} == {"pending"}, "A's acks marked B's pushes delivered"
    # B (which never acked) gets them again on reconnect, then acks them itself.
    b.client.ack_delay_s = 0.005
    await b.client.drop()
    await until(lambda: b.client.duplicates >= len(to_b), what="redelivery to B")

    async def all_delivered() -> bool:
        return {await srv.status(http, i) for i in to_b} == {"delivered"}

    await until(all_delivered, what="B's own acks recorded")
    assert not a.ids & set(to_b)
