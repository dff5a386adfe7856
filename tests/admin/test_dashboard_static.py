"""The dashboard's static files are public by design (docs/design.md, Decisions): they
answer without the admin token, carry none of the installation's data or secrets, and
every figure the page shows comes from the token-protected API."""

from __future__ import annotations

import aiohttp

from tests.admin.support import ADMIN_TOKEN, BUNDLE, TEAM, Rig

FILES = ("/admin/", "/admin/index.html", "/admin/app.js", "/admin/charts.js", "/admin/pages.js", "/admin/style.css")


async def test_static_files_are_public_fixed_and_hold_no_data(rig: Rig) -> None:
    _device, token, _client = await rig.new_device(user_id="someone-private")
    await rig.send(token, "a private alert text")
    secrets = (ADMIN_TOKEN, rig.api_key, BUNDLE, TEAM, token, "someone-private", "a private alert text")
    async with aiohttp.ClientSession() as anon:
        for path in FILES:
            async with anon.get(rig.base + path) as r:
                body = await r.text()
                assert r.status == 200, path
                assert "script-src 'self'" in r.headers["Content-Security-Policy"]
                for secret in secrets:
                    assert secret not in body, (path, secret)
        # Nothing else under /admin/ is served: no directory walking, no other files.
        for path in ("/admin/../gateway/config.py", "/admin/%2e%2e/pyproject.toml", "/admin/secret.json",
                     "/admin/dashboard/app.js"):  # fmt: skip
            async with anon.get(rig.base + path) as r:
                assert r.status in (401, 404), path
                assert ADMIN_TOKEN not in await r.text()
        # The data behind the page needs the token.
        for path in ("/stats", "/notifications", "/devices", "/apps"):
            async with anon.get(rig.admin_base + path) as r:
                assert r.status == 401, path
