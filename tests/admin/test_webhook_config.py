"""`webhook_max_attempts` reaches the worker of a running gateway: a webhook that
cannot be reached is dead-lettered after that many attempts, visible in the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.admin.support import BUNDLE, Rig, eventually, free_port, provisioned_rig, rig_config

APNS_TOKEN = "d1" * 32


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async with provisioned_rig(rig_config("embedded", tmp_path, webhook_max_attempts=1)) as r:
        yield r


async def test_unreachable_webhook_is_dead_after_the_configured_attempts(rig: Rig) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    await rig.admin("PUT", f"/apps/{BUNDLE}/webhook", json={"url": nobody, "secret": "s" * 32})
    await rig.rest("POST", "/api/v1/tokens/apns", json={"token": APNS_TOKEN, "topic": BUNDLE})
    async with (
        aiohttp.ClientSession(headers={"X-API-Key": rig.api_key}) as http,
        http.delete(f"{rig.base}/api/v1/tokens/{APNS_TOKEN}") as r,
    ):
        assert r.status == 204  # the token stops being valid: a feedback record and a webhook event

    async def dead() -> list:  # type: ignore[type-arg]
        return list((await rig.rest("GET", "/api/v1/webhooks/deliveries?state=dead"))["deliveries"])

    (job,) = await eventually(dead, what="the event dead-lettered")
    assert job["attempts"] == 1 and job["event"]["token"] == APNS_TOKEN
    assert (await rig.rest("GET", "/api/v1/webhooks/deliveries?state=pending"))["deliveries"] == []
