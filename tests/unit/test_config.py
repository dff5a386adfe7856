import pytest

from gateway.config import Config, ConfigError, load_config


def test_defaults_are_embedded():
    cfg = load_config(env={})
    assert cfg.embedded
    assert cfg.backlog_cap == 1000


def test_env_overrides_and_types():
    cfg = load_config(env={"PUSHGW_DATABASE_URL": "postgresql://u:pw@h/db", "PUSHGW_BACKLOG_CAP": "7"})
    assert not cfg.embedded
    assert cfg.backlog_cap == 7
    assert cfg.public_dict()["database_url"] == "postgresql://u:***@h/db"


def test_unknown_env_key_rejected():
    with pytest.raises(ConfigError, match="PUSHGW_NOPE"):
        load_config(env={"PUSHGW_NOPE": "1"})


def test_unknown_toml_key_rejected(tmp_path):
    path = tmp_path / "pushgw.toml"
    path.write_text("backlog_cap = 5\nbogus = 1\n")
    with pytest.raises(ConfigError, match="bogus"):
        load_config(str(path), env={})


def test_toml_then_env_precedence(tmp_path):
    path = tmp_path / "pushgw.toml"
    path.write_text("backlog_cap = 5\nws_port = 9000\n")
    cfg = load_config(str(path), env={"PUSHGW_WS_PORT": "9001"})
    assert (cfg.backlog_cap, cfg.ws_port) == (5, 9001)


def test_bad_value_is_a_clear_error():
    with pytest.raises(ConfigError, match="backlog_cap"):
        load_config(env={"PUSHGW_BACKLOG_CAP": "many"})


def test_keys_beside_the_pushgw_table_and_tables_as_values_are_rejected(tmp_path):
    cfg = tmp_path / "pushgw.toml"
    cfg.write_text("rest_port = 9000\n[pushgw]\nws_port = 9001\n")
    with pytest.raises(ConfigError, match=r"rest_port.*under \[pushgw\]"):
        load_config(str(cfg), {})
    cfg.write_text("[pushgw]\nws_port = 9001\n[other]\nx = 1\n")
    with pytest.raises(ConfigError, match="other"):
        load_config(str(cfg), {})
    cfg.write_text('[pushgw]\nadmin_token = ["a", "b"]\n')
    with pytest.raises(ConfigError, match="admin_token"):
        load_config(str(cfg), {})
    cfg.write_text("[pushgw]\n[pushgw.admin_token]\nx = 1\n")
    with pytest.raises(ConfigError, match="admin_token"):
        load_config(str(cfg), {})


def test_public_dict_masks_every_secret():
    cfg = Config(
        admin_token="adm1n-t0ken", secret_key="vault-secret",
        database_url="postgresql://pushgw:pg-pass@db:5432/pushgw?sslmode=require&password=q-pass",
        redis_url="rediss://:redis-pass@cache:6380/0",
    )  # fmt: skip
    shown = repr(cfg.public_dict())
    for secret in ("adm1n-t0ken", "vault-secret", "pg-pass", "q-pass", "redis-pass"):
        assert secret not in shown, secret
    assert cfg.public_dict()["database_url"].startswith("postgresql://pushgw:***@db:5432/pushgw?sslmode=require")
    assert Config().public_dict()["secret_key"] == ""  # unset stays visibly unset
