"""The dashboard in a real browser: Debian's chromium driven by Playwright.

Logs in with the admin token, opens every page, compares what each shows
with the admin API's answers, and saves a screenshot of each page under
test-artifacts/dashboard/.  Also checks that the page loads nothing from
anywhere but the gateway (no CDN).
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.admin.support import ADMIN_TOKEN, BUNDLE, Rig, eventually, provisioned_rig, rig_config

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    with tempfile.TemporaryDirectory(prefix="pushgw-chromium-") as profile:
        async with async_playwright() as pw:
            # A persistent context is the way to give chromium a fresh user-data-dir.
            ctx = await pw.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
                viewport={"width": 1280, "height": 900},
            )  # fmt: skip
            try:
                assert ctx.browser is None or ctx.browser.is_connected()
                yield ctx  # type: ignore[misc]
            finally:
                await ctx.close()


@pytest.fixture
async def dash_rig(tmp_path) -> AsyncIterator[Rig]:  # type: ignore[no-untyped-def]
    async with provisioned_rig(rig_config("embedded", tmp_path)) as r:
        yield r


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def test_dashboard_pages_show_what_the_admin_api_says(dash_rig: Rig, browser) -> None:  # type: ignore[no-untyped-def]
    rig = dash_rig
    online_id, online_token, _ = await rig.new_device(user_id="alice")
    offline_id, offline_token, _ = await rig.new_device(user_id="bob", connect=False)
    delivered_id = await rig.send(online_token, "hello")
    for i in range(2):
        await rig.send(offline_token, f"later {i}")

    async def acked() -> bool:
        return bool((await rig.admin("GET", "/stats"))["totals"]["delivered"] == 1)

    await eventually(acked, what="the push to the online device acked")

    page = await browser.new_page()
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))

    # -- login --------------------------------------------------------------------------
    await page.goto(f"{rig.base}/admin/")
    await expect(page.locator("#login")).to_be_visible()
    await page.fill("#token", "not-the-token")
    await page.click("#login-form button")
    await expect(page.locator("#login-error")).to_contain_text("Login failed")
    await shot(page, "login")
    await page.fill("#token", ADMIN_TOKEN)
    await page.click("#login-form button")
    await expect(page.locator("#nav")).to_be_visible()

    # -- overview: cards match /stats, the charts keep receiving points --------------------
    stats = await rig.admin("GET", "/stats")
    await expect(page.locator("#stat-delivered")).to_have_text(str(stats["totals"]["delivered"]))
    await expect(page.locator("#stat-pending")).to_have_text(str(stats["totals"]["pending"]))
    await expect(page.locator("#stat-accepted")).to_have_text(str(stats["totals"]["accepted"]))
    row = page.locator("#apps-stats tbody tr", has_text=BUNDLE)
    await expect(row.locator("td").nth(1)).to_have_text(str(stats["apps"][0]["accepted"]))
    window_min = stats["window_s"] // 60
    await expect(page.locator("#apps-title")).to_have_text(f"Per app (last {window_min} min; pending: now)")
    await page.wait_for_function("() => window.charts && window.charts.rate.snapshot().accepted?.length >= 2")
    before = await page.evaluate("() => window.charts.rate.snapshot().accepted.length")
    await rig.send(offline_token, "during the overview")
    await expect(page.locator("#stat-accepted")).to_have_text(str(stats["totals"]["accepted"] + 1))
    assert await page.evaluate("() => window.charts.rate.snapshot().accepted.length") > before
    conns = await page.evaluate("() => window.charts.connections.snapshot()")
    assert conns["shard 0"][-1] == (await rig.admin("GET", "/stats"))["connections"]["per_shard"]["0"]
    await shot(page, "overview")

    # -- devices ------------------------------------------------------------------------------
    await page.goto(f"{rig.base}/admin/#devices")
    api_devices = (await rig.admin("GET", "/devices"))["devices"]
    await expect(page.locator("#device-table tbody tr")).to_have_count(len(api_devices))
    await page.fill("#device-query", "alice")
    await page.click("#device-search button")
    await expect(page.locator("#device-table tbody tr")).to_have_count(1)
    await expect(page.locator("#device-table tbody tr")).to_contain_text(online_id)
    await page.goto(f"{rig.base}/admin/#devices/{offline_id}")
    detail = await rig.admin("GET", f"/devices/{offline_id}")
    await expect(page.locator("#detail-pending")).to_have_text(str(detail["backlog"]["pending"]))
    await expect(page.locator("#detail-presence")).to_have_text("offline")
    await expect(page.locator("#detail-tokens")).to_contain_text(offline_token)
    await expect(page.locator("#detail-backlog tbody tr")).to_have_count(len(detail["backlog"]["next"]))
    await shot(page, "devices")

    # -- notifications ------------------------------------------------------------------------
    await page.goto(f"{rig.base}/admin/#notifications/{delivered_id}")
    note = await rig.admin("GET", f"/notifications/{delivered_id}")
    events = page.locator("#detail-timeline li")
    await expect(events).to_have_count(len(note["timeline"]))
    assert [await e.get_attribute("data-event") for e in await events.all()] == [e["event"] for e in note["timeline"]]
    await expect(page.locator("#detail-status")).to_have_text("delivered")
    recent = (await rig.admin("GET", "/notifications?limit=50"))["notifications"]
    await expect(page.locator("#notification-table tbody tr")).to_have_count(len(recent))
    await shot(page, "notifications")

    # -- shards -------------------------------------------------------------------------------
    await page.goto(f"{rig.base}/admin/#shards")
    (shard,) = (await rig.admin("GET", "/shards"))["shards"]
    shard_row = page.locator("#shard-table tbody tr")
    await expect(shard_row).to_have_count(1)
    await expect(shard_row.locator("td").nth(1)).to_have_text(shard["status"])
    await expect(shard_row.locator("td").nth(2)).to_have_text(str(shard["connections"]))
    await shot(page, "shards")

    # -- apps: list, and create a team through the form ------------------------------------------
    await page.goto(f"{rig.base}/admin/#apps")
    apps = (await rig.admin("GET", "/apps"))["apps"]
    await expect(page.locator("#app-table tbody tr")).to_have_count(len(apps))
    await expect(page.locator("#app-table")).to_contain_text(BUNDLE)
    await page.fill("#new-team-id", "BROWSERT01")
    await page.click("#create-team button")
    await expect(page.locator("#team-table")).to_contain_text("BROWSERT01")
    assert "BROWSERT01" in [t["team_id"] for t in (await rig.admin("GET", "/teams"))["teams"]]
    await shot(page, "apps")

    # -- keys: API keys per app, create one through the form -------------------------------------
    await page.goto(f"{rig.base}/admin/#keys")
    await expect(page.locator("#api-key-table tbody tr")).to_have_count(1)
    await page.click("#create-apikey button")
    new_key = await page.locator("#new-api-key").text_content()
    keys = (await rig.admin("GET", f"/apps/{BUNDLE}/apikeys"))["api_keys"]
    assert new_key and new_key[:8] in [k["key_prefix"] for k in keys] and len(keys) == 2
    await shot(page, "keys")

    # Everything the page loaded came from the gateway itself.
    assert requested and all(url.startswith(rig.base) for url in requested), requested

    # Logging out forgets the token.
    await page.click("#logout")
    await expect(page.locator("#login")).to_be_visible()
    assert await page.evaluate("() => sessionStorage.getItem('pushgw-admin-token')") is None
    _ = online_token
