"""The example apps (examples/*.py) run end to end against a real `pushgw serve`
process, exactly as a user runs them against `make run`'s gateway, with
shorter periods.  Each example checks what it demonstrates and exits non-zero
when the gateway breaks it; each gets its own app and API key."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import Config

ROOT = Path(__file__).resolve().parents[2]
TEAM = "EXAMPLES01"
EXAMPLES = {
    "live_activity_rotation": ["--period", "3", "--rotations", "4"],  # 1 s slots could be skipped on a loaded box
    "security_camera": ["--window", "3", "--events", "6"],
    "time_capsule": ["--unlock-in", "3"],
    "chat": [],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHGW_")}
    if "power_window_ms" in {f.name for f in dataclasses.fields(Config)}:
        env["PUSHGW_POWER_WINDOW_MS"] = "0"  # priority 5 at once: the examples do not wait for a burst
    return env


def _cli(data_dir: Path, *args: str) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args, "--data-dir", str(data_dir)],
        check=True, capture_output=True, text=True, env=_env(),
    )  # fmt: skip
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@dataclasses.dataclass
class Gateway:
    rest: int
    ws: int
    keys: dict[str, str]  # example -> its app's API key


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("examples") / "data"
    _cli(data, "team", "create", "--team-id", TEAM, "--name", "Examples")
    keys = {}
    for name in EXAMPLES:
        bundle = f"com.example.{name.replace('_', '')}"
        _cli(data, "app", "create", "--team-id", TEAM, "--bundle-id", bundle)
        keys[name] = _cli(data, "apikey", "create", "--bundle-id", bundle)["api_key"]
    gw = Gateway(rest=_free_port(), ws=_free_port(), keys=keys)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(data), "--rest-port", str(gw.rest),
         "--http2-port", str(_free_port()), "--ws-port", str(gw.ws)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(),
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        banner = []
        while not any("worker:" in line for line in banner):
            line = proc.stdout.readline()
            assert line, "pushgw serve exited:\n" + "".join(banner)
            banner.append(line)
        yield gw
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()


@pytest.fixture(scope="module")
def runs(gateway: Gateway) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """All examples at once against the one gateway (they use separate apps),
    so the module costs the longest example, not the sum."""
    procs = {}
    for name, extra in EXAMPLES.items():
        bundle = f"com.example.{name.replace('_', '')}"
        procs[name] = subprocess.Popen(
            [sys.executable, str(ROOT / "examples" / f"{name}.py"),
             "--rest-url", f"http://127.0.0.1:{gateway.rest}", "--ws-url", f"ws://127.0.0.1:{gateway.ws}/v1/connect",
             "--api-key", gateway.keys[name], "--bundle-id", bundle, *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
        )  # fmt: skip
    yield procs
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_runs_against_the_gateway(runs: dict[str, subprocess.Popen[str]], name: str) -> None:
    stdout, stderr = runs[name].communicate(timeout=120)
    assert runs[name].returncode == 0, f"{name} failed:\n{stdout}\n{stderr}"
    assert "FAILED" not in stdout and "ok: " in stdout, stdout
