"""The `pushgw` command: the composition root.

Only this module imports provider_api, connection_server and feedback (see
DESIGN.md); it builds the Core (store, bus, presence, delivery engine) from
one Config and hands it to the listeners and workers of each process kind:

    pushgw serve                       everything in one process (embedded default)
    pushgw provider-api                HTTP/2 APNs listener + REST API
    pushgw connection-server --shard N one WebSocket shard
    pushgw worker                      sweeper, retention, APNs bridge, webhooks
    pushgw cluster --shards K          the cluster topology as local processes
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from gateway import __version__
from gateway.config import Config, ConfigError, from_environ

ROLES = ("provider", "shard", "worker")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="path to pushgw.toml")
    p.add_argument("--data-dir", dest="data_dir", help="embedded store directory")
    p.add_argument("--database-url", dest="database_url")
    p.add_argument("--redis-url", dest="redis_url")
    p.add_argument("--host")
    p.add_argument("--rest-port", dest="rest_port", type=int)
    p.add_argument("--http2-port", dest="http2_port", type=int)
    p.add_argument("--ws-port", dest="ws_port", type=int)
    p.add_argument("--shard", dest="shard_id")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushgw", description="self-hosted APNs-compatible push gateway")
    parser.add_argument("--version", action="version", version=f"pushgw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run everything in one process (embedded default)"),
        ("provider-api", "run the HTTP/2 APNs listener and the REST API"),
        ("connection-server", "run one WebSocket connection shard"),
        ("worker", "run the sweeper, retention, APNs bridge and webhook workers"),
        ("migrate", "apply store migrations and exit"),
    ):
        _common(sub.add_parser(name, help=text))
    cluster = sub.add_parser("cluster", help="run provider-api, K shards and a worker as local processes")
    _common(cluster)
    cluster.add_argument("--shards", type=int, default=2)
    cluster.add_argument(
        "--api-procs", dest="api_procs", type=int, default=1, help="provider-api processes sharing the ports"
    )

    cfg = sub.add_parser("config", help="configuration")
    cfg_sub = cfg.add_subparsers(dest="action", required=True)
    _common(cfg_sub.add_parser("show", help="print the effective config without secrets"))

    team = sub.add_parser("team", help="teams")
    t_sub = team.add_subparsers(dest="action", required=True)
    t_create = t_sub.add_parser("create")
    _common(t_create)
    t_create.add_argument("--team-id", required=True, help="10-character team id (the JWT iss)")
    t_create.add_argument("--name", default="")

    app = sub.add_parser("app", help="apps (bundle ids)")
    a_sub = app.add_subparsers(dest="action", required=True)
    a_create = a_sub.add_parser("create")
    _common(a_create)
    a_create.add_argument("--team-id", required=True)
    a_create.add_argument("--bundle-id", required=True)
    a_create.add_argument("--name", default="")

    key = sub.add_parser("key", help="provider signing keys (ES256)")
    k_sub = key.add_subparsers(dest="action", required=True)
    k_create = k_sub.add_parser("create", help="generate a key; prints the .p8 private key once")
    _common(k_create)
    k_create.add_argument("--team-id", required=True)
    k_create.add_argument("--key-id", help="10-character key id (random if omitted)")

    apikey = sub.add_parser("apikey", help="REST API keys")
    ak_sub = apikey.add_subparsers(dest="action", required=True)
    ak_create = ak_sub.add_parser("create", help="create an API key for an app; printed once")
    _common(ak_create)
    ak_create.add_argument("--bundle-id", required=True)

    _apns_credentials_parser(sub)

    device = sub.add_parser("device", help="devices")
    d_sub = device.add_subparsers(dest="action", required=True)
    d_sim = d_sub.add_parser("simulate", help="connect N simulated devices and print what arrives")
    d_sim.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def _apns_credentials_parser(sub: Any) -> None:
    creds = sub.add_parser("apns-credentials", help="the Apple credentials the bridge relays an app's pushes with")
    c_sub = creds.add_subparsers(dest="action", required=True)
    add = c_sub.add_parser("add", help="store a .p8 token key or a client certificate for an app (encrypted)")
    _common(add)
    add.add_argument("--bundle-id", required=True)
    add.add_argument("--p8", help="the AuthKey_XXXXXXXXXX.p8 file (with --team-id and --key-id)")
    add.add_argument("--team-id", help="Apple team id of the .p8 key (10 characters)")
    add.add_argument("--key-id", help="Apple key id of the .p8 key (10 characters)")
    add.add_argument("--cert", help="client certificate: PEM (certificate and key) or PKCS#12 (.p12)")
    add.add_argument("--password-file", help="file holding the PKCS#12 password (never on the command line)")
    _common(c_sub.add_parser("list", help="list stored credentials (no secrets are printed)"))
    remove = c_sub.add_parser("remove", help="delete an app's credentials")
    _common(remove)
    remove.add_argument("--bundle-id", required=True)


def _config_from(args: argparse.Namespace) -> Config:
    keys = ("data_dir", "database_url", "redis_url", "host", "rest_port", "http2_port", "ws_port", "shard_id")
    overrides = {k: getattr(args, k, None) for k in keys}
    return from_environ(getattr(args, "config", None), **overrides)


class GatewayProcess:
    """The listeners and workers of one process, for the given roles.

    ``provider``: REST API (+ feedback routes, health, metrics) and the HTTP/2
    APNs listener.  ``shard``: one WebSocket connection server.  ``worker``:
    sweeper/retention, the APNs bridge sender and the webhook worker.  Every
    process serves /healthz, /readyz and /metrics on ``rest_port``.
    """

    def __init__(self, cfg: Config, roles: Sequence[str]) -> None:
        self.cfg = cfg
        self.roles = tuple(roles)
        self.core: Any = None
        self._stoppers: list[Any] = []
        self._lines: list[str] = []

    async def start(self) -> None:
        from aiohttp import web

        from gateway.ops_http import add_ops_routes
        from gateway.runtime import Core

        cfg = self.cfg
        self.core = core = await Core.open(cfg)
        self._stoppers.append(core.close)
        # The provider APIs accept through the digest rule; the workers
        # (schedules, digest summaries) through the plain engine.
        from gateway.digest import DigestGate

        plain_engine = core.engine
        gate = DigestGate(plain_engine, core.store, rule_ttl_s=cfg.digest_rule_cache_s)
        core.engine = gate  # type: ignore[assignment]  # same interface (it delegates the rest)
        mode = f"embedded: SQLite in {cfg.data_dir}" if cfg.embedded else "cluster: PostgreSQL + Redis"
        self._lines.append(f"pushgw {__version__} ({mode}; roles: {', '.join(self.roles)})")

        if "provider" in self.roles:
            from feedback.api import add_feedback_routes
            from gateway.admin_api import add_admin_routes
            from gateway.admin_dashboard import add_dashboard_routes
            from provider_api.rest import build_rest_app

            # The REST app is the main app (its API-key middleware guards
            # /api/ only); feedback, admin and ops routes are added to it.
            app = build_rest_app(cfg, core)
            add_feedback_routes(app, core)
            add_admin_routes(app, cfg, core)
            add_dashboard_routes(app)
        else:
            app = web.Application()
        add_ops_routes(app, cfg, core)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        from gateway.tls import server_context

        tls = server_context(cfg)
        site = web.TCPSite(runner, cfg.host, cfg.rest_port, reuse_port=not cfg.embedded, ssl_context=tls)
        await site.start()
        self._stoppers.insert(0, runner.cleanup)
        scheme = "https" if tls else "http"
        self._lines.append(f"  REST API, health, metrics  {scheme}://{cfg.host}:{cfg.rest_port}/  (docs at /docs)")
        if "provider" in self.roles:
            self._lines.append(f"  admin dashboard  {scheme}://{cfg.host}:{cfg.rest_port}/admin/  (API /admin/api/v1)")

        if "provider" in self.roles:
            from provider_api.h2_server import H2Listener

            h2 = H2Listener(cfg, core)
            await h2.start()
            self._stoppers.insert(0, h2.stop)
            self._lines.extend(h2.describe())
        if "shard" in self.roles:
            from connection_server.server import ShardServer

            shard = ShardServer(cfg, core)
            await shard.start()
            self._stoppers.insert(0, shard.stop)
            self._lines.extend(shard.describe())
            from gateway.admin_shards import ShardBeacon

            beacon = ShardBeacon(core, shard, cfg.rest_port)
            beacon.start()
            self._stoppers.insert(0, beacon.stop)
        if "worker" in self.roles:
            from feedback.webhooks import WebhookWorker
            from gateway.apns_bridge.sender import BridgeSender
            from gateway.workers import Maintenance, RouteRepair

            maint = Maintenance(core.store, retention_s=cfg.retention_s)
            maint.start()
            self._stoppers.insert(0, maint.stop)
            repair = RouteRepair(core.store, core.engine)
            repair.start()
            self._stoppers.insert(0, repair.stop)
            bridge = BridgeSender(cfg, core.store)
            hooks = WebhookWorker(core.store, max_attempts=cfg.webhook_max_attempts)
            if cfg.worker_lease_s:  # faster takeover of a killed worker's claims
                bridge.lease_ms = hooks.lease_ms = cfg.worker_lease_s * 1000
            await bridge.start()
            self._stoppers.insert(0, bridge.stop)
            await hooks.start()
            self._stoppers.insert(0, hooks.stop)
            from gateway.digest import DigestWorker
            from gateway.schedules import ScheduleRunner

            schedules = ScheduleRunner(
                core.store, plain_engine, interval_s=cfg.schedule_tick_s, catch_up_s=cfg.schedule_catch_up_s
            )
            schedules.start()
            self._stoppers.insert(0, schedules.stop)
            digests = DigestWorker(core.store, plain_engine, interval_s=cfg.digest_tick_s, retention_s=cfg.retention_s)
            digests.start()
            self._stoppers.insert(0, digests.stop)
            from gateway.admin_exporter import StatsExporter

            exporter = StatsExporter(core)
            exporter.start()
            self._stoppers.insert(0, exporter.stop)
            self._lines.append(
                "  worker: expiry sweeper, retention, route repair, APNs bridge, webhooks, schedules, digests"
            )
        from connection_server.gc_tuning import tune_gc

        # Every role, once started: what exists now lives for the whole process.
        # Shards hold many sessions (long full collections); the APIs allocate
        # a few hundred objects per request (CPython's default thresholds cost
        # ~6 us per accept in bench-store).
        tune_gc()

    def describe(self) -> list[str]:
        return list(self._lines)

    async def stop(self) -> None:
        # Listeners first (graceful drains), then workers, then the core.
        for stop in self._stoppers:
            try:
                await stop()
            except Exception as exc:  # keep stopping the rest
                print(f"pushgw: error while stopping: {exc!r}", file=sys.stderr)
        self._stoppers.clear()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            # Drops this process's live gauges from the group's sums.
            multiprocess.mark_process_dead(os.getpid())


async def _run_until_signal(cfg: Config, roles: Sequence[str]) -> None:
    proc = GatewayProcess(cfg, roles)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await proc.start()
    for line in proc.describe():
        print(line, flush=True)
    try:
        await stop.wait()
    finally:
        print("pushgw: shutting down", flush=True)
        await proc.stop()


async def _with_store(cfg: Config, fn: Any) -> Any:
    from gateway.store import open_store

    store = await open_store(cfg)
    try:
        return await fn(store)
    finally:
        await store.close()


def _apns_credentials(args: argparse.Namespace, cfg: Config) -> int:
    import uvloop

    from gateway import apns_credentials as creds
    from gateway.apns_bridge.keyvault import VaultError

    async def bundle_ids(store: Any) -> dict[int, str]:
        return {a.app_id: a.bundle_id for a in await store.list_apps()}

    bundles = uvloop.run(_with_store(cfg, bundle_ids))
    try:
        vault = creds.open_vault(cfg)
        if args.action == "list":
            print(json.dumps({"apns_credentials": creds.list_all(vault, bundles)}, indent=2))
            return 0
        app_id = next((i for i, b in bundles.items() if b == args.bundle_id), None)
        if app_id is None:
            raise creds.CredentialsError(f"no app with bundle id {args.bundle_id!r}")
        if args.action == "remove":
            if not vault.delete(app_id):
                raise creds.CredentialsError(f"app {args.bundle_id} has no APNs credentials")
            print(json.dumps({"removed": args.bundle_id}))
            return 0
        if bool(args.p8) == bool(args.cert):
            raise creds.CredentialsError("give either --p8 (with --team-id and --key-id) or --cert")
        if args.p8:
            if not (args.team_id and args.key_id):
                raise creds.CredentialsError("--p8 needs --team-id and --key-id")
            with open(args.p8, encoding="utf-8") as f:
                out = creds.add_token_key(vault, app_id, args.team_id, args.key_id, f.read())
        else:
            password = None
            if args.password_file:
                with open(args.password_file, "rb") as pf:
                    password = pf.read().rstrip(b"\r\n")
            with open(args.cert, "rb") as cf:
                out = creds.add_certificate(vault, app_id, cf.read(), password)
    except (creds.CredentialsError, VaultError, OSError) as exc:
        print(f"pushgw: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({**out, "bundle_id": args.bundle_id}, indent=2))
    return 0


def _admin(args: argparse.Namespace, cfg: Config) -> int:
    import uvloop

    from gateway import admin_ops

    if args.command == "team":
        out = uvloop.run(_with_store(cfg, lambda s: admin_ops.create_team(s, args.team_id, args.name)))
    elif args.command == "app":
        out = uvloop.run(_with_store(cfg, lambda s: admin_ops.create_app(s, args.team_id, args.bundle_id, args.name)))
    elif args.command == "key":
        out = uvloop.run(_with_store(cfg, lambda s: admin_ops.create_provider_key(s, args.team_id, args.key_id)))
    else:
        out = uvloop.run(_with_store(cfg, lambda s: admin_ops.create_api_key(s, args.bundle_id)))
    print(json.dumps(out, indent=2))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["device", "simulate"]:
        # The simulator owns its options; argparse's REMAINDER would reject them.
        from connection_server.simulate import main as simulate_main

        return int(simulate_main(argv[2:]) or 0)
    args = build_parser().parse_args(argv)
    try:
        cfg = _config_from(args)
    except ConfigError as exc:
        print(f"pushgw: {exc}", file=sys.stderr)
        return 2
    if cfg.metrics_dir:
        # Before anything imports prometheus_client: it picks its value store
        # (per-process files in this directory) at import time.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = cfg.metrics_dir
        os.makedirs(cfg.metrics_dir, exist_ok=True)
    import uvloop

    from gateway.logs import parse_module_levels, setup_logging

    setup_logging(cfg.log_level, cfg.log_format, parse_module_levels(cfg.log_levels))
    if args.command == "serve":
        uvloop.run(_run_until_signal(cfg, ROLES))
    elif args.command == "provider-api":
        uvloop.run(_run_until_signal(cfg, ("provider",)))
    elif args.command == "connection-server":
        uvloop.run(_run_until_signal(cfg, ("shard",)))
    elif args.command == "worker":
        uvloop.run(_run_until_signal(cfg, ("worker",)))
    elif args.command == "cluster":
        from gateway.cluster import run_cluster

        return run_cluster(cfg, args.shards, args.api_procs)
    elif args.command == "migrate":
        uvloop.run(_with_store(cfg, _noop))
        print("migrations applied")
    elif args.command == "config":
        print(json.dumps(cfg.public_dict(), indent=2))
    elif args.command == "apns-credentials":
        return _apns_credentials(args, cfg)
    else:
        return _admin(args, cfg)
    return 0


async def _noop(_store: Any) -> None:
    return None


if __name__ == "__main__":
    raise SystemExit(main())
