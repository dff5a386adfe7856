"""Eclipse Mosquitto on a free loopback port, for the side-by-side runs.

Installed with apt-get when missing (Debian package ``mosquitto``).  The
configuration mirrors the pushgw load shape: persistence on (Mosquitto's is a
periodic snapshot, pushgw's a commit per batch; the report says so), QoS 1,
persistent sessions, unlimited queued messages per offline client, and the
same 64 unacked messages in flight per client as pushgw's drain window.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from loadtest.harness.procs import free_port, rss_kib, wait_listening

CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/
autosave_interval 1800
max_inflight_messages {window}
max_queued_messages 0
max_connections -1
log_dest file {dir}/mosquitto.log
log_type error
log_type warning
"""


def ensure_installed() -> str:
    path = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if path:
        return path
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "mosquitto"], check=True, env=env)
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return path


class Mosquitto:
    def __init__(self, window: int = 64) -> None:
        self.window = window
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = ""
        self.version = ""

    async def start(self) -> None:
        binary = ensure_installed()
        self.dir = tempfile.mkdtemp(prefix="loadtest-mosquitto-")
        if os.geteuid() == 0:  # mosquitto drops root to the user "mosquitto"
            shutil.chown(self.dir, "mosquitto")
        self.port = free_port()
        conf = Path(self.dir) / "mosquitto.conf"
        conf.write_text(CONF.format(port=self.port, dir=self.dir, window=self.window))
        out = await asyncio.to_thread(subprocess.run, [binary, "-h"], capture_output=True, text=True)
        self.version = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else ""
        self.proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
        await wait_listening(self.port, 20)

    def rss_kib(self) -> int:
        return rss_kib(self.proc.pid) if self.proc is not None else 0

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                await asyncio.to_thread(self.proc.wait, 15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                await asyncio.to_thread(self.proc.wait, 5)
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
