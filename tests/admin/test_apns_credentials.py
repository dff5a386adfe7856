"""An operator uploads an app's Apple credentials (admin API and `pushgw apns-credentials`).

The upload goes through the real gateway (SQLite store, the worker's bridge
sender) and the pushes of the app then reach the strict mock of Apple, which
checks the JWT signed with the uploaded .p8 key.  Nothing the API or the
CLI prints holds a private key, a certificate body or a password.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from gateway import cli
from tests.admin.support import BUNDLE, Rig, eventually, provisioned_rig, rig_config
from tests.bridge.certs import make_client_cert, make_p8, make_self_signed
from tests.bridge.mock_apple import MockApple

APPLE_TEAM, APPLE_KID = "APPLETEAM1", "APPLEKEY01"
SECRET = "vault-secret-for-the-admin-tests"
APNS_TOKEN = "c0" * 32


def _no_secrets(text: str, *secrets: str) -> None:
    assert "PRIVATE KEY" not in text and "CERTIFICATE-----" not in text
    for secret in secrets:
        assert secret not in text


@pytest.fixture
async def apple(tmp_path: Path) -> AsyncIterator[tuple[MockApple, str, str]]:
    cert, key = make_self_signed(tmp_path)
    private, public = make_p8()
    mock = MockApple(cert, key)
    mock.add_key(APPLE_KID, APPLE_TEAM, public)
    mock.add_token(APNS_TOKEN, BUNDLE)
    port = await mock.start()
    try:
        yield mock, private, f"{port}:{cert}"
    finally:
        await mock.stop()


@pytest.fixture
async def rig(tmp_path: Path, apple: tuple[MockApple, str, str]) -> AsyncIterator[Rig]:
    port, ca = apple[2].split(":", 1)
    cfg = rig_config(
        "embedded", tmp_path, secret_key=SECRET, apns_production_host="127.0.0.1",
        apns_sandbox_host="127.0.0.1", apns_port=int(port), apns_ca_file=ca,
    )  # fmt: skip
    async with provisioned_rig(cfg) as r:
        yield r


async def test_uploaded_p8_key_relays_the_apps_pushes_to_apple(rig: Rig, apple) -> None:  # type: ignore[no-untyped-def]
    mock, private, _ = apple
    path = f"/apps/{BUNDLE}/apns-credentials"
    await rig.admin("GET", path, 404)
    body = {"kind": "token", "team_id": APPLE_TEAM, "key_id": APPLE_KID, "p8": private}
    shown = await rig.admin("PUT", path, json=body)
    assert shown == {"app_id": shown["app_id"], "kind": "token", "team_id": APPLE_TEAM, "key_id": APPLE_KID,
                     "bundle_id": BUNDLE}  # fmt: skip
    assert await rig.admin("GET", path) == shown
    listed = await rig.admin("GET", "/apns-credentials")
    assert listed == {"apns_credentials": [shown]}
    _no_secrets(json.dumps(listed), private)
    raw_vault = (Path(rig.cfg.data_dir) / "apns_keys.json").read_text()
    _no_secrets(raw_vault, private.splitlines()[1])  # sealed at rest

    await rig.rest("POST", "/api/v1/tokens/apns", json={"token": APNS_TOKEN, "topic": BUNDLE})
    apns_id = await rig.send(APNS_TOKEN, "to a real iPhone")

    async def relayed() -> bool:
        status = await rig.rest("GET", f"/api/v1/notifications/{apns_id}")
        return bool(status["status"] == "relayed")

    await eventually(relayed, what="relayed with the uploaded key")
    assert mock.ok_count(apns_id) == 1
    # The operator sees Apple's id for it: the sandbox's apns-unique-id.
    detail = await rig.admin("GET", f"/notifications/{apns_id}")
    assert (detail["status"], detail["apple_id"]) == ("relayed", mock.unique_ids[apns_id])

    await rig.admin("DELETE", path, 204)
    await rig.admin("GET", path, 404)
    await rig.admin("DELETE", path, 404)


async def test_bad_uploads_are_refused_and_certificates_are_described_not_echoed(rig: Rig, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = f"/apps/{BUNDLE}/apns-credentials"
    private, _ = make_p8()
    for body, says in (
        ({"kind": "token", "team_id": "short", "key_id": APPLE_KID, "p8": private}, "10 characters"),
        ({"kind": "token", "team_id": APPLE_TEAM, "key_id": APPLE_KID, "p8": "not a key"}, ".p8"),
        ({"kind": "password", "p8": private}, "kind"),
        ({"kind": "certificate", "certificate": "%%% not base64"}, "PKCS#12"),
    ):
        err = await rig.admin("PUT", path, 400, json=body)
        assert says in err["detail"], err
    await rig.admin("PUT", "/apps/com.example.nobody/apns-credentials", 404, json={"kind": "token"})

    _ca, pem, p12 = make_client_cert(tmp_path, BUNDLE, password=b"open sesame")
    wrong = {"kind": "certificate", "certificate": base64.b64encode(p12).decode(), "password": "wrong"}
    assert "password" in (await rig.admin("PUT", path, 400, json=wrong))["detail"]
    good = {**wrong, "password": "open sesame"}
    shown = await rig.admin("PUT", path, json=good)
    assert (shown["kind"], len(shown["fingerprint_sha256"])) == ("certificate", 64)
    assert BUNDLE in shown["subject"] and shown["not_after"]
    _no_secrets(json.dumps(shown), "open sesame")
    # PEM text (certificate and key) replaces it: same certificate, same fingerprint.
    again = await rig.admin("PUT", path, json={"kind": "certificate", "certificate": pem.decode()})
    assert again["fingerprint_sha256"] == shown["fingerprint_sha256"]
    _no_secrets(json.dumps(await rig.admin("GET", "/apns-credentials")), "open sesame")
    async with aiohttp.ClientSession() as anon, anon.get(rig.admin_base + path) as r:
        assert r.status == 401


def test_cli_adds_lists_and_removes_without_printing_secrets(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    data = ["--data-dir", str(tmp_path)]
    monkeypatch.setenv("PUSHGW_SECRET_KEY", SECRET)
    assert cli.main(["team", "create", "--team-id", "CLITEAM001", *data]) == 0
    assert cli.main(["app", "create", "--team-id", "CLITEAM001", "--bundle-id", "com.example.cli", *data]) == 0
    capsys.readouterr()
    private, _ = make_p8()
    (tmp_path / "AuthKey.p8").write_text(private)
    add = ["apns-credentials", "add", "--bundle-id", "com.example.cli", *data]
    p8 = ["--p8", str(tmp_path / "AuthKey.p8"), "--team-id", APPLE_TEAM, "--key-id", APPLE_KID]
    assert cli.main([*add, *p8]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["key_id"] == APPLE_KID
    _no_secrets(out, private)

    _ca, _pem, p12 = make_client_cert(tmp_path, "com.example.cli", password=b"pw-in-a-file")
    (tmp_path / "app.p12").write_bytes(p12)
    (tmp_path / "pw").write_text("pw-in-a-file\n")
    assert cli.main([*add, "--cert", str(tmp_path / "app.p12")]) == 2  # no password: refused
    assert "PKCS#12" in capsys.readouterr().err
    assert cli.main([*add, "--cert", str(tmp_path / "app.p12"), "--password-file", str(tmp_path / "pw")]) == 0
    capsys.readouterr()
    assert cli.main(["apns-credentials", "list", *data]) == 0
    out = capsys.readouterr().out
    (entry,) = json.loads(out)["apns_credentials"]
    assert (entry["bundle_id"], entry["kind"]) == ("com.example.cli", "certificate")
    _no_secrets(out, "pw-in-a-file")

    assert cli.main(["apns-credentials", "remove", "--bundle-id", "com.example.cli", *data]) == 0
    assert cli.main(["apns-credentials", "remove", "--bundle-id", "com.example.cli", *data]) == 2
    capsys.readouterr()
    assert cli.main(["apns-credentials", "list", *data]) == 0
    assert json.loads(capsys.readouterr().out) == {"apns_credentials": []}
    monkeypatch.delenv("PUSHGW_SECRET_KEY")
    assert cli.main(["apns-credentials", "list", *data]) == 2
    assert "secret_key" in capsys.readouterr().err
