"""REST quiet hours of a device (SQLite and PostgreSQL)."""

from __future__ import annotations

from schemas.quiet_hours import QuietHours
from tests.integration.test_rest_fixtures import Rest, rest_fixture  # noqa: F401  (fixture)


async def test_set_read_and_clear_quiet_hours(rest: Rest) -> None:
    device_id, _ = await rest.device_with_token()
    path = f"/api/v1/devices/{device_id}/quiet-hours"
    assert (await rest.call("GET", path)) == (404, {"reason": "NotFound"})
    body = {"start": "22:00", "end": "07:30", "tz": "Europe/Berlin"}
    assert await rest.call("PUT", path, body) == (200, body)
    assert await rest.call("GET", path) == (200, body)
    assert await rest.core.store.get_quiet_hours(device_id) == QuietHours(22 * 60, 7 * 60 + 30, "Europe/Berlin")
    assert (await rest.call("DELETE", path))[0] == 204
    assert await rest.core.store.get_quiet_hours(device_id) is None


async def test_bad_quiet_hours_and_foreign_device(rest: Rest) -> None:
    device_id, _ = await rest.device_with_token()
    path = f"/api/v1/devices/{device_id}/quiet-hours"
    for bad in (
        {"start": "25:00", "end": "07:00", "tz": "UTC"},
        {"start": "22:00", "end": "22:00", "tz": "UTC"},
        {"start": "22:00", "end": "07:00", "tz": "Mars/Olympus"},
    ):
        assert await rest.call("PUT", path, bad) == (400, {"reason": "BadRequestParams"})
    ok = {"start": "22:00", "end": "07:00", "tz": "UTC"}
    assert (await rest.call("PUT", path, ok, key=rest.b.key)) == (404, {"reason": "NotFound"})
