"""`python -m connection_server --shard N --ws-port P`: one shard process.

Reads PUSHGW_* from the environment (PUSHGW_DATABASE_URL, PUSHGW_REDIS_URL,
...), prints one ``ready`` line once listening, stops cleanly on SIGTERM or
SIGINT (devices get a reconnect hint and close code 1012).
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import uvloop

from connection_server.gc_tuning import tune_gc
from connection_server.server import ShardServer
from gateway.config import from_environ


async def run(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m connection_server")
    p.add_argument("--shard", default=None, help="shard id (default from config)")
    p.add_argument("--ws-port", type=int, default=None)
    p.add_argument("--host", default=None)
    p.add_argument("--config", default=None, help="pushgw.toml")
    args = p.parse_args(argv)
    cfg = from_environ(args.config, shard_id=args.shard, ws_port=args.ws_port, host=args.host)

    from gateway.runtime import Core

    core = await Core.open(cfg)
    server = ShardServer(cfg, core)
    try:
        await server.start()
        tune_gc()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        print(f"ready shard={cfg.shard_id} port={server.port}", flush=True)
        await stop.wait()
    finally:
        await server.stop()
        await core.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    return uvloop.run(run(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    raise SystemExit(main())
