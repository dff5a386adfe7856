"""The `pushgw` command: the composition root.

Only this module imports provider_api, connection_server and feedback; it
builds the store, bus, presence and delivery engine from one Config and
hands them to the listeners.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from gateway import __version__
from gateway.config import ConfigError, from_environ


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="path to pushgw.toml")
    p.add_argument("--data-dir", dest="data_dir", help="embedded store directory")
    p.add_argument("--database-url", dest="database_url")
    p.add_argument("--redis-url", dest="redis_url")
    p.add_argument("--host")
    p.add_argument("--rest-port", dest="rest_port", type=int)
    p.add_argument("--http2-port", dest="http2_port", type=int)
    p.add_argument("--ws-port", dest="ws_port", type=int)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushgw", description="self-hosted APNs-compatible push gateway")
    parser.add_argument("--version", action="version", version=f"pushgw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run everything in one process (embedded default)")
    _common(serve)
    migrate = sub.add_parser("migrate", help="apply store migrations and exit")
    _common(migrate)
    return parser


def _config_from(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    keys = ("data_dir", "database_url", "redis_url", "host", "rest_port", "http2_port", "ws_port")
    overrides = {k: getattr(args, k, None) for k in keys}
    return from_environ(getattr(args, "config", None), **overrides)


class Gateway:
    """Everything `pushgw serve` runs in one process."""

    def __init__(self, cfg) -> None:  # type: ignore[no-untyped-def]
        self.cfg = cfg
        self._runners: list = []

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()

        async def health(_request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        async def version(_request: web.Request) -> web.Response:
            return web.json_response({"name": "pushgw", "version": __version__})

        app.router.add_get("/healthz", health)
        app.router.add_get("/readyz", health)
        app.router.add_get("/version", version)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.cfg.host, self.cfg.rest_port)
        await site.start()
        self._runners.append(runner)

    def describe(self) -> list[str]:
        c = self.cfg
        return [
            f"pushgw {__version__} ({'embedded: SQLite in ' + c.data_dir if c.embedded else 'cluster'})",
            f"  REST/health  http://{c.host}:{c.rest_port}/",
        ]

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()


async def _serve(cfg) -> None:  # type: ignore[no-untyped-def]
    gw = Gateway(cfg)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await gw.start()
    for line in gw.describe():
        print(line, flush=True)
    try:
        await stop.wait()
    finally:
        print("pushgw: shutting down", flush=True)
        await gw.stop()


async def _migrate(cfg) -> None:  # type: ignore[no-untyped-def]
    from gateway.store import open_store

    store = await open_store(cfg)
    await store.close()
    print("migrations applied")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = _config_from(args)
    except ConfigError as exc:
        print(f"pushgw: {exc}", file=sys.stderr)
        return 2
    import uvloop

    if args.command == "serve":
        uvloop.run(_serve(cfg))
    elif args.command == "migrate":
        uvloop.run(_migrate(cfg))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
