"""`pushgw cluster --shards K`: the cluster topology as local processes.

Starts one provider-api process (or ``--api-procs N`` sharing its ports), K connection shards (consecutive WebSocket
and ops ports) and one worker, all against the configured PostgreSQL and
Redis, and stops them all (by PID) on Ctrl-C or when one of them dies.
Tests and load tests use it; docker-compose.yml runs the same roles.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from gateway.config import Config


def plan(cfg: Config, shards: int, api_procs: int = 1) -> list[tuple[str, list[str]]]:
    """(name, argv) of every process of the topology."""
    base = [sys.executable, "-m", "gateway.cli"]
    api = [*base, "provider-api", "--rest-port", str(cfg.rest_port), "--http2-port", str(cfg.http2_port)]
    procs = [("provider-api" if n == 0 else f"provider-api-{n}", api) for n in range(api_procs)]
    for n in range(shards):
        procs.append(
            (
                f"shard-{n}",
                [
                    *base,
                    "connection-server",
                    "--shard",
                    str(n),
                    "--ws-port",
                    str(cfg.ws_port + n),
                    "--rest-port",
                    str(cfg.rest_port + 10 + n),
                ],
            )
        )
    procs.append(("worker", [*base, "worker", "--rest-port", str(cfg.rest_port + 9)]))
    return procs


def run_cluster(cfg: Config, shards: int, api_procs: int = 1) -> int:
    if cfg.embedded or not cfg.redis_url:
        print("pushgw cluster needs PUSHGW_DATABASE_URL and PUSHGW_REDIS_URL", file=sys.stderr)
        return 2
    if shards < 1 or api_procs < 1:
        print("pushgw cluster needs --shards >= 1 and --api-procs >= 1", file=sys.stderr)
        return 2
    env = dict(os.environ, PUSHGW_DATABASE_URL=cfg.database_url, PUSHGW_REDIS_URL=cfg.redis_url)
    # The provider-api processes share their ports (SO_REUSEPORT) and so one
    # metrics directory: /metrics on any of them reports the group's sums.
    # A fresh directory per run, so no dead run's counters are added in.
    metrics_dir = tempfile.mkdtemp(prefix="pushgw-metrics-")
    api_env = dict(env, PUSHGW_METRICS_DIR=metrics_dir)
    # Apply migrations once before the processes race to do it.
    subprocess.run([sys.executable, "-m", "gateway.cli", "migrate"], env=env, check=True)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    stopping = False

    def stop(*_args: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for name, argv in plan(cfg, shards, api_procs):
            child_env = api_env if name.startswith("provider-api") else env
            children.append((name, subprocess.Popen(argv, env=child_env)))
            print(f"cluster: started {name} pid {children[-1][1].pid}", flush=True)
        while not stopping:
            for name, child in children:
                if child.poll() is not None:
                    print(f"cluster: {name} exited with {child.returncode}; stopping", flush=True)
                    stopping = True
            time.sleep(0.2)
    finally:
        for _name, child in children:
            if child.poll() is None:
                child.terminate()
        deadline = time.monotonic() + 15
        for _name, child in children:
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
