"""Log records carry the request id and the apns-id; levels are set per module.

A real gateway (embedded) with JSON logs: a REST send with an
``X-Request-Id`` writes the submit module's debug record (enabled only for
that logger through ``log_levels``) carrying both ids and only a redacted
token; an admin change is logged with its request id; the id is echoed in
the response header and a new one is made when the caller sends none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import aiohttp
import orjson
import pytest

from gateway.logs import parse_module_levels, setup_logging
from tests.admin.support import ADMIN_TOKEN, BUNDLE, Rig, rig_config


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("pushgw.submit", "pushgw.admin"):
        logging.getLogger(name).setLevel(logging.NOTSET)


def test_module_levels_are_parsed_and_bad_ones_rejected() -> None:
    assert parse_module_levels("pushgw.h2=debug, aiohttp.access=WARNING") == {
        "pushgw.h2": "debug",
        "aiohttp.access": "warning",
    }
    for bad in ("pushgw.h2", "pushgw.h2=loud", "=debug"):
        with pytest.raises(ValueError):
            parse_module_levels(bad)


async def test_records_carry_request_id_and_apns_id(tmp_path, capsys, restore_logging) -> None:  # type: ignore[no-untyped-def]
    cfg = rig_config("embedded", tmp_path, log_format="json", log_levels="pushgw.submit=debug")
    setup_logging(cfg.log_level, cfg.log_format, parse_module_levels(cfg.log_levels))
    rig = Rig(cfg)
    await rig.start()
    try:
        await rig.provision()
        _dev, token, _client = await rig.new_device()
        capsys.readouterr()
        apns_id = "5e1f6a3c-0000-4000-8000-00000000beef"
        body = {"token": token, "topic": BUNDLE, "payload": {"aps": {"alert": "x"}}, "apns_id": apns_id}
        async with aiohttp.ClientSession(headers={"X-API-Key": rig.api_key}) as http:
            async with http.post(f"{rig.base}/api/v1/send", json=body, headers={"X-Request-Id": "req-send-1"}) as r:
                assert r.status == 200, await r.text()
                assert r.headers["X-Request-Id"] == "req-send-1"
            async with http.get(f"{rig.base}/healthz", headers={"X-Request-Id": "bad id with spaces"}) as r:
                assert len(r.headers["X-Request-Id"]) == 32  # replaced by a fresh one
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as http:
            async with http.patch(
                f"{rig.admin_base}/apps/{BUNDLE}", json={"name": "renamed"}, headers={"X-Request-Id": "req-admin-7"}
            ) as r:
                assert r.status == 200
        err = capsys.readouterr().err
    finally:
        await rig.stop()
    records = [orjson.loads(line) for line in err.splitlines() if line.startswith("{")]
    (submit,) = [r for r in records if r["logger"] == "pushgw.submit"]
    assert submit["level"] == "debug"
    assert submit["request_id"] == "req-send-1" and submit["apns_id"] == apns_id
    assert token not in err and f"{token[:4]}…{token[-4:]}" in submit["msg"]
    (admin,) = [r for r in records if r["logger"] == "pushgw.admin"]
    assert admin["request_id"] == "req-admin-7" and "PATCH" in admin["msg"]


async def test_default_levels_keep_debug_records_out(tmp_path, capsys, restore_logging) -> None:  # type: ignore[no-untyped-def]
    cfg = rig_config("embedded", tmp_path, log_format="json")
    setup_logging(cfg.log_level, cfg.log_format, parse_module_levels(cfg.log_levels))
    rig = Rig(cfg)
    await rig.start()
    try:
        await rig.provision()
        _dev, token, _client = await rig.new_device()
        await rig.send(token)
    finally:
        await rig.stop()
    assert '"logger":"pushgw.submit"' not in capsys.readouterr().err
