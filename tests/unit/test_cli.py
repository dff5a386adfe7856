"""CLI wiring that does not need a running gateway."""

from __future__ import annotations

import json

import pytest

from gateway import cli


def test_device_simulate_receives_its_own_options(monkeypatch):
    seen: list[list[str]] = []
    import connection_server.simulate as sim

    monkeypatch.setattr(sim, "main", lambda argv: seen.append(list(argv)) or 0)
    assert cli.main(["device", "simulate", "--count", "3", "--data-dir", "./d"]) == 0
    assert seen == [["--count", "3", "--data-dir", "./d"]]


def test_config_show_masks_secrets(monkeypatch, capsys):
    monkeypatch.setenv("PUSHGW_ADMIN_TOKEN", "hunter2")
    monkeypatch.setenv("PUSHGW_DATABASE_URL", "postgresql://u:pw@db/pushgw")
    assert cli.main(["config", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["admin_token"] == "***"
    assert shown["database_url"] == "postgresql://u:***@db/pushgw"


def test_unknown_config_key_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("PUSHGW_NOT_A_KEY", "1")
    assert cli.main(["config", "show"]) == 2
    assert "PUSHGW_NOT_A_KEY" in capsys.readouterr().err


def test_cluster_plan_has_every_role_on_distinct_ports():
    from gateway.cluster import plan
    from gateway.config import Config

    procs = plan(Config(rest_port=9000, ws_port=9100, http2_port=9200), shards=3)
    names = [name for name, _ in procs]
    assert names == ["provider-api", "shard-0", "shard-1", "shard-2", "worker"]
    ports = []
    for _, argv in procs:
        ports += [argv[i + 1] for i, a in enumerate(argv) if a.endswith("-port")]
    assert len(ports) == len(set(ports))


def test_version_flag(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert "pushgw" in capsys.readouterr().out
