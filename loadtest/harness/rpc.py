"""Load processes driven by the coordinator over a pipe, without blocking either side.

``Remote(cls, **init)`` spawns a process that builds ``cls(**init)`` inside a
uvloop loop and serves its ``cmd_<name>`` coroutines.  Commands run as tasks,
so a quick ``stats`` call is answered while a long ``connect`` ramp is still
running.  Each end reads the pipe with one blocking reader thread, not
``add_reader`` (uvloop would make the pipe non-blocking, and a large message
would then fail with EAGAIN).
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing as mp
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any


class RemoteError(RuntimeError):
    pass


def _serve(conn: Connection, cls: type, init: dict[str, Any]) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        handler = cls(**init)
        done = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def run(rid: int, name: str, kwargs: dict[str, Any]) -> None:
            try:
                result = await getattr(handler, "cmd_" + name)(**kwargs)
                conn.send((rid, True, result))
            except Exception:
                conn.send((rid, False, traceback.format_exc()))
            if name == "close":
                done.set()

        def dispatch(rid: int, name: str, kwargs: dict[str, Any]) -> None:
            task = loop.create_task(run(rid, name, kwargs))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        def read_commands() -> None:
            # A thread with blocking reads, not add_reader: uvloop would make the
            # pipe non-blocking, and a large reply would then fail with EAGAIN.
            while True:
                try:
                    rid, name, kwargs = conn.recv()
                except (EOFError, OSError):
                    loop.call_soon_threadsafe(done.set)
                    return
                loop.call_soon_threadsafe(dispatch, rid, name, kwargs)
                if name == "close":
                    return

        threading.Thread(target=read_commands, daemon=True).start()
        await done.wait()

    uvloop.run(main())


class Remote:
    """The coordinator's handle on one load process."""

    def __init__(self, cls: type, **init: Any) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, cls, init), daemon=True)
        self.process.start()
        child.close()
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[Any]] = {}
        self._reader: threading.Thread | None = None

    def _read_replies(self, loop: asyncio.AbstractEventLoop) -> None:
        while True:
            try:
                rid, ok, value = self._conn.recv()
            except (EOFError, OSError):
                loop.call_soon_threadsafe(self._fail_all, "load process exited")
                return
            loop.call_soon_threadsafe(self._resolve, rid, ok, value)

    def _resolve(self, rid: int, ok: bool, value: Any) -> None:
        fut = self._waiting.pop(rid, None)
        if fut is not None and not fut.done():
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(RemoteError(value))

    def _fail_all(self, why: str) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(RemoteError(why))
        self._waiting.clear()

    async def call(self, name: str, timeout: float | None = None, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self._reader is None:
            self._reader = threading.Thread(target=self._read_replies, args=(loop,), daemon=True)
            self._reader.start()
        rid = next(self._ids)
        fut: asyncio.Future[Any] = loop.create_future()
        self._waiting[rid] = fut
        self._conn.send((rid, name, kwargs))
        return await asyncio.wait_for(fut, timeout)

    async def close(self) -> None:
        try:
            await self.call("close", timeout=30)
        except Exception:
            pass
        await asyncio.to_thread(self.process.join, 10)
        if self.process.is_alive():
            self.process.kill()
            await asyncio.to_thread(self.process.join, 5)
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, 5)
        self._conn.close()
