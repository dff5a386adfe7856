"""Small process and socket helpers shared by the targets: free ports, RSS, waiting for a listener."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_block(n: int) -> int:
    """A base port with ``n`` consecutive free ports after it (best effort)."""
    for _ in range(50):
        base = free_port()
        if base + n >= 65000:
            continue
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of free ports")


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (from /proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        import os

        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


async def wait_listening(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            w.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s") from None
            await asyncio.sleep(0.2)


def _proc_table() -> tuple[dict[int, list[int]], dict[int, str]]:
    """(children by parent pid, command line by pid) of every process."""
    kids: dict[int, list[int]] = {}
    cmds: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        pid = int(entry.name)
        kids.setdefault(ppid, []).append(pid)
        cmds[pid] = cmd
    return kids, cmds


def service_pids(pg_port: int | None, redis_port: int | None) -> dict[str, list[int]]:
    """PostgreSQL (postmaster and every backend) and Redis serving these loopback ports."""
    kids, cmds = _proc_table()
    out: dict[str, list[int]] = {"postgres": [], "redis": []}
    for pid, cmd in cmds.items():
        if pg_port and "postgres" in cmd and f" -p {pg_port} " in cmd:
            todo = [pid]
            while todo:
                p = todo.pop()
                out["postgres"].append(p)
                todo.extend(kids.get(p, []))
        elif redis_port and "redis-server" in cmd and f":{redis_port}" in cmd:
            out["redis"].append(pid)
    return out
