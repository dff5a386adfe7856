"""docker-compose.yml, the Dockerfile and deploy/ checked structurally.

Docker cannot run on the test machine, so these tests check what can go
wrong without it: every pushgw service runs a real `pushgw` command line,
the environment holds only known config keys, shard ids and ports do not
collide, Prometheus scrapes the services on the port they serve metrics on,
the Grafana dashboard only queries documented metrics, and every file the
compose file mounts exists.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import yaml

from gateway.cli import build_parser
from gateway.config import load_config
from tests.ops.metrics_doc import documented

ROOT = Path(__file__).resolve().parents[2]
PUSHGW_SERVICES = {"migrate", "provider-api", "shard-0", "shard-1", "worker"}


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env(service: dict) -> dict[str, str]:  # type: ignore[type-arg]
    # ${VAR:-default} as compose would expand it with VAR unset.
    return {k: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(v)) for k, v in service["environment"].items()}


def test_compose_runs_the_documented_topology_with_real_commands() -> None:
    services = compose()["services"]
    assert set(services) == PUSHGW_SERVICES | {"postgres", "redis", "prometheus", "grafana"}
    parser = build_parser()
    shard_ids, ws_ports, host_ports = set(), set(), []
    for name in PUSHGW_SERVICES:
        svc = services[name]
        args = parser.parse_args(svc["command"])
        cfg = load_config(env=_env(svc), overrides={"shard_id": getattr(args, "shard_id", None)})
        assert not cfg.embedded and cfg.redis_url, name  # the cluster backends
        assert cfg.host == "0.0.0.0"
        expected = {"migrate": "migrate", "provider-api": "provider-api", "worker": "worker"}.get(name)
        assert args.command == (expected or "connection-server"), name
        if args.command == "connection-server":
            shard_ids.add(args.shard_id)
            ws_ports.add(args.ws_port)
            assert f"{args.ws_port}:{args.ws_port}" in svc["ports"]
        if name != "migrate":
            assert args.rest_port == 8080, f"{name}: metrics and readiness on 8080 (prometheus.yml)"
            assert "8080/readyz" in " ".join(svc["healthcheck"]["test"])
            deps = svc["depends_on"]
            assert deps["migrate"]["condition"] == "service_completed_successfully"
            assert deps["redis"]["condition"] == "service_healthy"
        host_ports += [p.split(":")[0] for p in svc.get("ports", [])]
    assert shard_ids == {"0", "1"} and len(ws_ports) == 2
    assert len(host_ports) == len(set(host_ports)), "two services publish one host port"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
    for name in PUSHGW_SERVICES:
        assert "profiles" not in services[name]


def test_provider_api_and_worker_share_the_apns_credentials_vault() -> None:
    # The admin API (provider-api) writes <data_dir>/apns_keys.json, the bridge (worker) reads it.
    services = compose()["services"]
    mounts = {}
    for name in ("provider-api", "worker"):
        svc = services[name]
        cfg = load_config(env=_env(svc))
        assert "PUSHGW_SECRET_KEY" in svc["environment"], name
        (mount,) = [v for v in svc["volumes"] if v.split(":")[1] == cfg.data_dir]
        mounts[name] = mount.split(":")[0]
    assert mounts["provider-api"] == mounts["worker"] in compose()["volumes"]
    assert "PUSHGW_DATA_DIR=/var/lib/pushgw" in (ROOT / "Dockerfile").read_text()  # the image agrees


def test_prometheus_scrapes_every_pushgw_service_and_grafana_queries_documented_metrics() -> None:
    services = compose()["services"]
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{s}:8080" for s in PUSHGW_SERVICES - {"migrate"}}
    for vol in services["prometheus"]["volumes"] + services["grafana"]["volumes"]:
        assert (ROOT / vol.split(":")[0]).exists(), vol

    dash = json.loads((ROOT / "deploy" / "grafana" / "pushgw-dashboard.json").read_text())
    names = documented()
    used = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            for metric in re.findall(r"pushgw_[a-z0-9_]+", target["expr"]):
                base = re.sub(r"_(bucket|count|sum)$", "", metric)
                assert base in names, f"panel {panel['title']!r} queries undocumented {metric}"
                used.add(base)
    # The dashboard covers the core signals.
    assert {"pushgw_delivery_accepted_total", "pushgw_shard_connections", "pushgw_ready",
            "pushgw_ack_latency_seconds", "pushgw_notifications", "pushgw_bridge_requests_total"} <= used  # fmt: skip


def test_dockerfile_installs_every_package_and_runs_pushgw() -> None:
    text = (ROOT / "Dockerfile").read_text()
    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in include:
        package = pattern.rstrip("*")
        assert f"COPY {package} ./{package}" in text, package
    assert 'ENTRYPOINT ["pushgw"]' in text
    assert re.search(r"^USER (?!root)", text, re.M), "the image does not run as root"
