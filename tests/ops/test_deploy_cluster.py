"""docs/deploy.md's cluster steps, run as written, then every process checked.

The fenced block after the ``deploy-test`` marker is executed line by line
(``export`` lines set the environment, with the throwaway PostgreSQL/Redis
instead of the documented URLs; ``pushgw ...`` lines run the CLI; the
``pushgw cluster`` line is started in the background).  Then, per the port
table of deploy.md: every process is ready, its /metrics lists exactly
what docs/metrics.md documents for its role (no undocumented pushgw_*
metric, no documented one missing, labels as documented, never a token),
and /metrics of the two provider-api processes that share one port reports
the sum over both (multi-process aware).
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.fault.support import port_block
from tests.integration.test_cluster_cli import _wait_ready, psutil_children
from tests.ops.metrics_doc import documented, families, sample_value

DEPLOY = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"


def deploy_steps() -> list[str]:
    text = DEPLOY.read_text()
    marker = text.index("<!-- deploy-test")
    block = re.search(r"```sh\n(.*?)```", text[marker:], re.S)
    assert block, "deploy.md: no sh block after the deploy-test marker"
    return [ln.strip() for ln in block.group(1).splitlines() if ln.strip()]


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with http.get(url) as r:
        return r.status, await r.text()


async def test_deploy_md_cluster_steps_and_metrics_of_every_process(pg_dsn: str, redis_url: str) -> None:
    base = port_block(16)
    rest, ws, h2 = base, base + 2, base + 14
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGW_")}
    env.update(PUSHGW_REST_PORT=str(rest), PUSHGW_WS_PORT=str(ws), PUSHGW_HTTP2_PORT=str(h2))
    cluster_argv: list[str] = []
    outputs: list[str] = []
    for step in deploy_steps():
        words = shlex.split(step)
        if words[0] == "export":
            key, _, value = words[1].partition("=")
            value = {"PUSHGW_DATABASE_URL": pg_dsn, "PUSHGW_REDIS_URL": redis_url}.get(key, value)
            env[key] = value
        elif words[:2] == ["pushgw", "cluster"]:
            cluster_argv = words[1:]
        else:
            assert words[0] == "pushgw", step
            out = subprocess.run(  # noqa: ASYNC221 - setup steps, in order
                [sys.executable, "-m", "gateway.cli", *words[1:]], env=env, capture_output=True, text=True
            )
            assert out.returncode == 0, (step, out.stderr)
            outputs.append(out.stdout)
    assert cluster_argv[:3] == ["cluster", "--shards", "2"] and "--api-procs" in cluster_argv
    assert any("api_key" in o for o in outputs)
    admin_token = env["PUSHGW_ADMIN_TOKEN"]

    cluster = subprocess.Popen(  # noqa: ASYNC220 - long-lived, stopped below by PID
        [sys.executable, "-m", "gateway.cli", *cluster_argv], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        ports = {"provider": rest, "shard-0": rest + 10, "shard-1": rest + 11, "worker": rest + 9}
        for port in ports.values():
            # Five interpreters start at once on a shared 2-core machine: be patient.
            await _wait_ready(f"http://127.0.0.1:{port}/readyz", deadline_s=90)
        assert len(psutil_children(cluster.pid)) == 5  # 2 provider-api, 2 shards, worker

        async with aiohttp.ClientSession() as http:
            # The admin API answers on the provider port with the documented token.
            async with http.get(
                f"http://127.0.0.1:{rest}/admin/api/v1/shards", headers={"Authorization": f"Bearer {admin_token}"}
            ) as r:
                assert r.status == 200
            # Requests spread over both provider processes (new connection each):
            # any one scrape must report all of them.
            for _ in range(20):
                async with aiohttp.ClientSession() as fresh:
                    async with fresh.get(f"http://127.0.0.1:{rest}/admin/api/v1/stats") as r:
                        assert r.status == 401
            for _ in range(4):
                _, text = await _get(http, f"http://127.0.0.1:{rest}/metrics")
                assert sample_value(text, "pushgw_admin_requests_total", status="401") == 20

            docs = documented()
            for proc, port in ports.items():
                role = proc.split("-")[0]
                status, text = await _get(http, f"http://127.0.0.1:{port}/metrics")
                assert status == 200
                scraped = families(text)
                want = {n for n, d in docs.items() if role in d["roles"]}  # type: ignore[operator]
                assert set(scraped) - set(docs) == set(), f"{proc}: undocumented metrics"
                assert want - set(scraped) == set(), f"{proc}: documented metrics missing"
                for name, (kind, labels) in scraped.items():
                    assert kind == docs[name]["type"], (proc, name, kind)
                    assert labels <= docs[name]["labels"], (proc, name, labels)  # type: ignore[operator]
                assert not re.search(r'="[0-9a-f]{64}"', text), f"{proc}: a device token in a label"
            # Shards name themselves; the worker exports store figures per app.
            await asyncio.sleep(0)
            _, shard_text = await _get(http, f"http://127.0.0.1:{rest + 11}/metrics")
            assert 'pushgw_shard_connections{shard="1"}' in shard_text
            _, worker_text = await _get(http, f"http://127.0.0.1:{rest + 9}/metrics")
            assert 'pushgw_notifications{app="com.example.app",status="pending"} 0.0' in worker_text
    finally:
        cluster.send_signal(signal.SIGTERM)
        rc = cluster.wait(timeout=30)
    assert rc == 0
    assert psutil_children(cluster.pid) == []
