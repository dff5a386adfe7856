"""One typed configuration object, built at the edge.

Sources, later wins: defaults < ``pushgw.toml`` < ``PUSHGW_*`` environment
variables < command-line flags.  Library code receives a ``Config`` and never
reads the environment.  Unknown keys are rejected with a clear error.

Every field is documented in docs/configuration.md.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_type_hints

from gateway.logs import LEVELS, parse_module_levels


class ConfigError(ValueError):
    pass


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    # -- deployment ---------------------------------------------------------
    data_dir: str = "./data"  # embedded SQLite store lives here
    database_url: str = ""  # postgresql://... switches to the Postgres store
    redis_url: str = ""  # redis://... switches to the Redis bus/presence
    shard_id: str = "0"

    # -- listeners ----------------------------------------------------------
    host: str = "127.0.0.1"
    http2_port: int = 2197  # APNs-compatible HTTP/2 (Apple's alternate port)
    rest_port: int = 8080  # REST + admin + health + metrics
    ws_port: int = 8765  # device WebSocket
    tls_cert: str = ""
    tls_key: str = ""

    # -- delivery -----------------------------------------------------------
    retention_s: int = 30 * 24 * 3600  # default storage when no apns-expiration
    backlog_cap: int = 1000  # pending notifications per token
    drain_window: int = 64  # unacked pushes in flight per session
    ack_flush_ms: int = 5  # acks are batched into the store this often
    group_commit_max: int = 2000  # notifications per accept transaction
    group_commit_flushers: int = 2  # concurrent accept transactions per process (PostgreSQL)
    pg_analyze_interval_s: float = 2.0  # look for stale planner statistics this often; 0 = leave it to autovacuum
    power_window_ms: int = 10_000  # priority 5 is held this long per device, then sent as one burst
    background_budget_per_hour: int = 3  # background pushes per device per hour; beyond, the newest waits

    # -- device sessions ----------------------------------------------------
    ws_ping_interval_s: float = 60.0
    ws_ping_timeout_s: float = 30.0
    ws_max_frame: int = 16 * 1024
    hello_timeout_s: float = 10.0
    presence_ttl_s: int = 60
    reconnect_delay_ms: int = 1000

    # -- provider API -------------------------------------------------------
    h2_max_concurrent_streams: int = 1000
    provider_token_max_age_s: int = 3600
    provider_token_min_refresh_s: int = 1200
    app_rate_per_s: float = 0.0  # 0 = unlimited
    token_rate_per_s: float = 0.0  # repeated pushes to one token; 0 = unlimited

    # -- admin / ops --------------------------------------------------------
    admin_token: str = ""
    admin_stats_window_s: int = 900  # admin statistics (and pushgw_notifications) cover this much recent time
    log_level: str = "info"
    log_format: str = "console"  # console | json
    log_levels: str = ""  # per-logger levels: "pushgw.h2=debug,aiohttp.access=warning"
    metrics_dir: str = ""  # shared by processes on one port: /metrics sums them (prometheus multiprocess)
    secret_key: str = ""  # encrypts provider private keys at rest (bridge)

    # -- APNs bridge --------------------------------------------------------
    apns_production_host: str = "api.push.apple.com"
    apns_sandbox_host: str = "api.sandbox.push.apple.com"
    apns_port: int = 443
    apns_ca_file: str = ""  # extra CA for a test server standing in for Apple
    apns_max_attempts: int = 12  # relay attempts per notification before it is rejected
    # Claims of relay rows and webhook jobs expire after this; a killed worker's
    # claimed work is taken over then.  0 = the senders' defaults (120 s / 60 s).
    worker_lease_s: int = 0
    webhook_max_attempts: int = 8  # delivery attempts of a webhook event before it is dead-lettered

    # -- schedules and digests ------------------------------------------------
    schedule_tick_s: float = 1.0  # how often the worker looks for due schedule slots
    schedule_catch_up_s: int = 300  # a missed slot older than this is skipped, not fired late
    digest_tick_s: float = 1.0  # how often the worker summarizes ended digest windows
    digest_rule_cache_s: float = 5.0  # a changed digest rule applies in other processes within this

    @property
    def embedded(self) -> bool:
        return not self.database_url

    def public_dict(self) -> dict[str, Any]:
        """Effective config with secrets masked (for `pushgw config show`)."""
        out = dataclasses.asdict(self)
        for key in ("admin_token", "secret_key"):
            if out[key]:
                out[key] = "***"
        for key in ("database_url", "redis_url"):
            out[key] = _mask_url(out[key])
        return out


def _mask_url(url: str) -> str:
    """Hide the password of a URL: in its user info and in a ``password=`` query parameter."""
    url = re.sub(r"(?i)([?&]password=)[^&]*", r"\1***", url)
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else url


_FIELDS = {f.name: f for f in dataclasses.fields(Config)}
_TYPES = get_type_hints(Config)


def _coerce(name: str, value: Any) -> Any:
    kind = _TYPES[name]
    if isinstance(value, (dict, list)):  # a TOML table or array where a single value belongs
        raise ConfigError(f"config key {name!r}: expected one {kind.__name__}, got {type(value).__name__}")
    try:
        if kind is bool:
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key {name!r}: cannot read {value!r} as {kind.__name__}") from exc


def load_config(
    toml_path: str | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    values: dict[str, Any] = {}
    path = toml_path or (env or {}).get("PUSHGW_CONFIG")
    if path:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from exc
        flat = raw.get("pushgw", raw)
        if flat is not raw and len(raw) > 1:  # keys beside [pushgw] would be silently ignored
            stray = ", ".join(sorted(k for k in raw if k != "pushgw"))
            raise ConfigError(f"unknown config key(s) {stray} in {path}: put every key under [pushgw]")
        if not isinstance(flat, dict):
            raise ConfigError(f"[pushgw] in {path} must be a table")
        for key, value in flat.items():
            if key not in _FIELDS:
                raise ConfigError(f"unknown config key {key!r} in {path}")
            values[key] = _coerce(key, value)
    for key, value in (env or {}).items():
        if not key.startswith("PUSHGW_") or key == "PUSHGW_CONFIG":
            continue
        name = key[len("PUSHGW_") :].lower()
        if name not in _FIELDS:
            raise ConfigError(f"unknown environment variable {key}")
        values[name] = _coerce(name, value)
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in _FIELDS:
            raise ConfigError(f"unknown config key {key!r}")
        values[key] = _coerce(key, value)
    cfg = Config(**values)
    _validate(cfg)
    return cfg


def _validate(cfg: Config) -> None:
    if cfg.database_url and not cfg.database_url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("database_url must start with postgresql://")
    if cfg.redis_url and not cfg.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("redis_url must start with redis:// or rediss://")
    if cfg.log_format not in ("console", "json"):
        raise ConfigError("log_format must be 'console' or 'json'")
    if cfg.log_level.lower() not in LEVELS:
        raise ConfigError(f"log_level must be one of {', '.join(LEVELS)}")
    try:
        parse_module_levels(cfg.log_levels)
    except ValueError as exc:
        raise ConfigError(f"log_levels: {exc}") from exc
    if bool(cfg.tls_cert) != bool(cfg.tls_key):
        raise ConfigError("tls_cert and tls_key must be set together")
    for name in ("schedule_tick_s", "digest_tick_s"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be positive")
    for name in ("schedule_catch_up_s", "digest_rule_cache_s", "pg_analyze_interval_s"):
        if getattr(cfg, name) < 0:
            raise ConfigError(f"{name} must not be negative")
    if cfg.power_window_ms < 0:
        raise ConfigError("power_window_ms must be >= 0 (0 sends priority 5 at once)")
    for name in (
        "backlog_cap",
        "drain_window",
        "group_commit_max",
        "group_commit_flushers",
        "presence_ttl_s",
        "ws_max_frame",
        "background_budget_per_hour",
        "admin_stats_window_s",
        "webhook_max_attempts",
    ):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be positive")


def from_environ(toml_path: str | None = None, **overrides: Any) -> Config:
    return load_config(toml_path, os.environ, overrides)
