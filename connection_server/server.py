"""The shard: a websockets server driving one ``Session`` per device socket.

Order on connect (DESIGN.md promise 3): hello -> authenticate -> claim
presence -> tell the older connection to close -> take the overflow count ->
welcome -> drain the backlog.  Because presence is claimed before the backlog
is read, a notification committed meanwhile is either found by the router
(doorbell on our channel) or by the drain; the session drops the duplicate.

Pub/sub is only a doorbell: whenever the subscription is (re)established the
shard re-drains every session it holds.

Memory per socket (about 9 KiB idle; a plain websockets server is about 15):
keepalive pings come from one shard-wide loop, not websockets' task per
connection; the handshake headers are dropped once the socket is open; the
handler reads with ``recv()`` in a loop (no async generator per socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import Counter
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from connection_server import session as s
from connection_server.admission import admit
from connection_server.batching import Batcher
from connection_server.frames import Close
from connection_server.power import Mode, PowerPolicy
from gateway.apns_bridge.invalidation import token_invalidated
from gateway.bus import messages as m
from gateway.bus.base import PresenceEntry
from gateway.config import Config
from gateway.store.sessions_store import DeviceConnect
from gateway.tls import server_context
from schemas.errors import PushgwError
from schemas.notification import Environment, StoredNotification

if TYPE_CHECKING:
    from gateway.runtime import Core

log = logging.getLogger("pushgw.shard")

PUSH_WRITES = Counter("pushgw_shard_push_writes_total", "Socket writes carrying pushes (device wake-ups)")

#: Store calls in flight per shard (authenticate, drain pages, ack flushes).
#: Below the store's pool (10 connections by default): a reconnect storm of
#: thousands of devices then queues here instead of timing out on the pool
#: (which answered "PostgreSQL unavailable" and closed the sockets 1011).
STORE_CONCURRENCY = 8
#: (device, id) pairs per ack statement: one flush of all sessions' acks.
ACK_BATCH = 5_000
#: Devices per batched connect read, presence claim pipeline and backlog read
#: (connection_server/batching.py): a reconnect storm costs a few round trips
#: per batch, not several per device.
CONNECT_BATCH = 500
DRAIN_BATCH = 200

CONNECT_PATH = "/v1/connect"
#: Listen queue (the kernel caps it at net.core.somaxconn) and the time a
#: connection may take from accept to the end of its opening handshake.
LISTEN_BACKLOG = 4096
OPEN_TIMEOUT_S = 30.0

#: Replaces each connection's handshake headers once the handshake is done.
#: websockets keeps ``request`` and ``response`` (and its frame parser keeps
#: the request) for the connection's lifetime: ~3 KiB of headers per socket
#: that nothing reads again.  ``request`` itself must stay non-None:
#: websockets takes the first event of a connection whose ``request`` is None
#: for the handshake.
_NO_HEADERS = Headers()


class _Conn:
    """One socket and its session.  Slotted; the session never points back."""

    __slots__ = ("drain_next", "drain_task", "session", "timer", "ws")

    def __init__(self, ws: ServerConnection, session: s.Session) -> None:
        self.ws = ws
        self.session = session
        self.drain_next: s.Drain | None = None
        self.drain_task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None  # only while pushes wait (power window, quiet hours)


class _BoundedConnection(ServerConnection):
    """Drops a peer that keeps sending while it reads nothing.

    websockets answers every ping with a pong written straight to the
    transport, so a client flooding pings without reading would grow the
    shard's write buffer without bound.  Past ``write_cap`` the socket is
    aborted (no close frame: the peer is not reading it anyway).
    """

    write_cap = 256 * 1024

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport.get_write_buffer_size() > self.write_cap:
            transport.abort()
            return
        super().data_received(data)


class ShardServer:
    def __init__(self, cfg: Config, core: Core) -> None:
        self.cfg = cfg
        self.core = core
        self.port = 0
        self._conns: dict[str, _Conn] = {}
        self._dirty: set[_Conn] = set()  # sessions with acks to flush
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._server: Server | None = None
        self._stopping = False
        self._need_repair = False  # presence may be lost: re-claim, then re-drain
        self._store_gate = asyncio.Semaphore(STORE_CONCURRENCY)
        # A device that does not read lets frames pile up in the kernel and then
        # in the transport; past this bound it is closed as too slow.
        self._write_cap = max(256 * 1024, cfg.drain_window * cfg.ws_max_frame, 2 * s.BATCH_MAX_BYTES)
        self._policy = PowerPolicy(window_s=cfg.power_window_ms / 1000)
        self._connects: Batcher[tuple[str, str], DeviceConnect | None] = Batcher(
            self._connect_devices, max_batch=CONNECT_BATCH
        )
        self._claims: Batcher[str, tuple[int, PresenceEntry | None]] = Batcher(
            self._claim_devices, max_batch=CONNECT_BATCH
        )
        self._pages: Batcher[tuple[str, int, tuple[int, int] | None], list[StoredNotification]] = Batcher(
            self._backlog_pages, max_batch=DRAIN_BATCH
        )
        self._push_writes = 0  # added to PUSH_WRITES by the ack loop (a counter update takes a lock)

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.cfg
        self._server = await serve(
            self._handler,
            cfg.host,
            cfg.ws_port,
            compression=None,
            max_size=cfg.ws_max_frame,
            max_queue=4,
            write_limit=16 * 1024,
            # Keepalive is one shard-wide loop (_keepalive_loop), not websockets'
            # task per connection (a task and its frames cost ~1.5 KiB each).
            ping_interval=None,
            close_timeout=2,
            # A reconnect storm: thousands of SYNs at once.  The default accept
            # queue (100) overflowed, and handshakes that waited for the loop
            # longer than websockets' 10 s were aborted (a reset, no close code).
            backlog=LISTEN_BACKLOG,
            open_timeout=OPEN_TIMEOUT_S,
            process_request=_check_path,
            ssl=server_context(cfg),
            create_connection=type("ShardConnection", (_BoundedConnection,), {"write_cap": self._write_cap}),
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        await self.core.bus.subscribe(cfg.shard_id, self._on_message, self._on_resubscribed)
        self._loops = [
            asyncio.create_task(self._ack_loop(), name="shard-acks"),
            asyncio.create_task(self._presence_loop(), name="shard-presence"),
        ]
        if cfg.ws_ping_interval_s:
            self._loops.append(asyncio.create_task(self._keepalive_loop(), name="shard-keepalive"))

    async def stop(self) -> None:
        """Clean shutdown: reconnect hint, presence released, close 1012."""
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(Exception):
            await self.core.bus.unsubscribe(self.cfg.shard_id)
        conns = list(self._conns.values())
        for conn in conns:
            self._apply(conn, conn.session.shutdown(self.cfg.reconnect_delay_ms))
        releases = [self.core.presence.release(c.session.device_id, c.session.epoch) for c in conns if c.session.epoch]
        with contextlib.suppress(Exception):
            await asyncio.gather(*releases)
        if self._server is not None:
            self._server.close(close_connections=False)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
        await self._flush_acks()
        for batcher in (self._connects, self._claims, self._pages):
            await batcher.close()
        for task in self._loops:
            task.cancel()
        for task in [*self._loops, *self._tasks]:
            with contextlib.suppress(BaseException):
                await task

    def describe(self) -> list[str]:
        scheme = "wss" if self.cfg.tls_cert else "ws"
        url = f"{scheme}://{self.cfg.host}:{self.port}{CONNECT_PATH}"
        return [f"  device WebSocket  {url}  (shard {self.cfg.shard_id})"]

    @property
    def connections(self) -> int:
        return len(self._conns)

    # -- one socket ----------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        if self._stopping:
            await ws.close(Close.SERVICE_RESTART, "server restart")
            return
        if ws.request is not None:
            ws.request.headers = _NO_HEADERS
        ws.response = None
        # Only used while writes are paused (append/remove/iterate): an empty
        # list is 56 bytes, an empty deque 624.
        ws.drain_waiters = cast("deque[asyncio.Future[None]]", [])
        conn = _Conn(ws, s.Session(self.cfg.drain_window, self._policy))
        try:
            try:
                async with asyncio.timeout(self.cfg.hello_timeout_s):
                    first = await ws.recv()
            except TimeoutError:
                # Awaited here, not spawned: returning from the handler first
                # would let websockets close with 1000 instead of 4003.
                for a in conn.session.hello_timeout():
                    if isinstance(a, s.CloseConn):
                        await ws.close(a.code, a.reason)
                return
            await self._run(conn, self._receive(conn, first))
            while True:  # not ``async for``: its async generator is ~260 bytes per socket
                data = await ws.recv()
                await self._run(conn, self._receive(conn, data))
        except ConnectionClosed:
            pass
        finally:
            await self._cleanup(conn)

    @staticmethod
    def _receive(conn: _Conn, data: str | bytes) -> list[s.Action]:
        # The protocol is JSON text frames (docs/protocol.md); websockets
        # returns a binary frame as bytes.
        if isinstance(data, bytes):
            return conn.session.refuse("binary frame")
        return conn.session.receive(data)

    async def _run(self, conn: _Conn, actions: list[s.Action]) -> None:
        """Execute actions, awaiting the store calls that answer a frame."""
        sess = conn.session
        for a in actions:
            try:
                if isinstance(a, s.Authenticate):
                    await self._authenticate(conn, a)
                elif isinstance(a, s.IssueToken):
                    tok = await self.core.store.issue_token(sess.device_id, a.topic, Environment(a.environment))
                    self._apply(conn, sess.registered(a.rid, tok.token, tok.topic, tok.environment.value))
                elif isinstance(a, s.RevokeToken):
                    known = await self.core.store.get_token(a.token)
                    if known is None or known.device_id != sess.device_id:
                        self._apply(conn, sess.request_failed(a.rid, "BadDeviceToken", "not a token of this device"))
                        continue
                    at_ms = await self.core.store.unregister_token(a.token) or _now_ms()
                    if known.active:  # feedback (and the app's webhook) learn of the token's end once
                        await token_invalidated(self.core.store, known.app_id, a.token, "Unregistered", at_ms)
                    self._apply(conn, sess.unregistered(a.rid, a.token, at_ms))
                elif isinstance(a, s.SaveQuiet):
                    await self.core.store.set_quiet_hours(sess.device_id, a.quiet)
                    self._apply(conn, sess.quiet_saved(a.rid, a.quiet))
                elif isinstance(a, s.Admit):
                    await self._admit(conn, a)
                else:
                    self._apply(conn, [a])
            except PushgwError as exc:
                log.warning("store/bus error for device %s: %s", sess.device_id, exc)
                self._apply(conn, sess.fail(exc.reason))

    async def _authenticate(self, conn: _Conn, a: s.Authenticate) -> None:
        core, cfg, sess = self.core, self.cfg, conn.session
        found = await self._connects.get((a.device_id, a.secret))
        if found is None:
            self._apply(conn, sess.auth_failed())
            return
        device = found.device
        epoch, replaced = await self._claims.get(device.device_id)
        older = self._conns.get(device.device_id)
        self._conns[device.device_id] = conn
        if older is not None and older is not conn:
            self._apply(older, older.session.kick(epoch))
        if replaced is not None and replaced.shard_id != cfg.shard_id:
            await core.engine.kick(device.device_id, replaced, epoch)
        overflow = 0
        if found.overflow > 0:  # rare: only then a write (connect_devices only reads)
            async with self._store_gate:
                overflow = await core.store.take_overflow(device.device_id)
        self._apply(
            conn,
            sess.authenticated(
                found.bundle_id,
                epoch,
                cfg.ws_ping_interval_s,
                cfg.ws_max_frame,
                overflow,
                found.quiet,
                now_s=time.time(),
            ),
        )

    # -- batched store and presence calls (connection_server/batching.py) ---------

    async def _connect_devices(self, credentials: list[tuple[str, str]]) -> list[DeviceConnect | None]:
        async with self._store_gate:
            return await self.core.store.connect_devices(credentials)

    async def _claim_devices(self, device_ids: list[str]) -> list[tuple[int, PresenceEntry | None]]:
        return await self.core.presence.claim_many(device_ids, self.cfg.shard_id, self.cfg.presence_ttl_s)

    async def _backlog_pages(
        self, requests: list[tuple[str, int, tuple[int, int] | None]]
    ) -> list[list[StoredNotification]]:
        async with self._store_gate:
            # No now_s: the store compares deliver_at_ms with the time in
            # milliseconds, so a scheduled push rung the moment it comes due is
            # not missed by a truncated second.
            return await self.core.store.backlog_many(requests)

    async def _admit(self, conn: _Conn, a: s.Admit) -> None:
        """Background budget and Live Activity order, decided by the store."""
        sess = conn.session
        try:
            async with self._store_gate:
                refused, retry_at_s = await admit(
                    self.core.store, sess.device_id, a.rows, self.cfg.background_budget_per_hour, _now_ms()
                )
        except PushgwError as exc:
            log.warning("admission for %s failed: %s", sess.device_id, exc)
            sess.admit_failed(a.rows)
            await asyncio.sleep(1.0)
            self._apply(conn, sess.request_drain(Mode.BURST))
            return
        self._apply(conn, sess.admitted(a.rows, refused, retry_at_s))

    def _apply(self, conn: _Conn, actions: Sequence[s.Action]) -> None:
        """Execute the actions that need no awaiting (sends, closes, drains).

        Consecutive sends are one socket write (one radio wake-up): a burst,
        or a welcome with the first page of the backlog.
        """
        frames: list[bytes] = []
        for a in actions:
            if isinstance(a, s.Send):
                frames.append(a.data)
                continue
            if frames:
                if not self._write(conn, frames):
                    return
                frames = []
            if isinstance(a, s.Drain):
                conn.drain_next = a
                if conn.drain_task is None:
                    conn.drain_task = self._spawn(self._drain(conn))
            elif isinstance(a, s.FlushAcks):
                self._dirty.add(conn)
            elif isinstance(a, s.CloseConn):
                self._spawn(conn.ws.close(a.code, a.reason))
            elif isinstance(a, s.SetTimer):
                self._set_timer(conn, a.at_s)
            else:  # store calls, handled by _run
                self._spawn(self._run(conn, [a]))
        if frames:
            self._write(conn, frames)

    def _write(self, conn: _Conn, frames: list[bytes]) -> bool:
        """Write text frames with one ``transport.write``; False if the device is too slow."""
        ws = conn.ws
        if len(frames) == 1:
            broadcast((ws,), frames[0], text=True)
        elif ws.protocol.state is State.OPEN and ws.transport is not None:
            # websockets writes each frame on its own (one send() each); frame
            # them all first and hand the transport their concatenation.
            for data in frames:
                ws.protocol.send_text(data)
            chunks = ws.protocol.data_to_send()
            ws.transport.write(b"".join(chunks))
        else:
            return True
        if frames[-1].startswith((b'{"type":"push"', b'{"type":"batch"')):
            self._push_writes += 1
        transport = ws.transport
        if transport is not None and transport.get_write_buffer_size() > self._write_cap:
            self._apply(conn, conn.session.too_slow())
            return False
        return True

    def _set_timer(self, conn: _Conn, at_s: float) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
        loop = asyncio.get_running_loop()
        delay = max(at_s - time.time(), 0.0)
        conn.timer = loop.call_at(loop.time() + delay, self._on_timer, conn)

    def _on_timer(self, conn: _Conn) -> None:
        conn.timer = None
        self._apply(conn, conn.session.timer(time.time()))

    async def _drain(self, conn: _Conn) -> None:
        sess = conn.session
        try:
            while (a := conn.drain_next) is not None:
                conn.drain_next = None
                try:
                    rows = await self._pages.get((sess.device_id, a.limit, a.after))
                except PushgwError as exc:
                    log.warning("drain of %s failed: %s", sess.device_id, exc)
                    sess.drain_failed()
                    await asyncio.sleep(1.0)
                    self._apply(conn, sess.request_drain())
                    continue
                self._apply(conn, sess.drained(rows, a.limit, time.time()))
        finally:
            conn.drain_task = None

    async def _cleanup(self, conn: _Conn) -> None:
        sess = conn.session
        sess.closed()
        if conn.drain_task is not None:
            conn.drain_task.cancel()
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        device_id = sess.device_id
        if device_id and self._conns.get(device_id) is conn:
            del self._conns[device_id]
            if sess.epoch and not self._stopping:
                with contextlib.suppress(Exception):
                    await self.core.presence.release(device_id, sess.epoch)
        self._dirty.discard(conn)
        await self._flush_one(conn)

    # -- shard channel -----------------------------------------------------------

    def _on_message(self, data: bytes) -> None:
        try:
            msg = m.decode(data)
        except Exception:
            log.warning("undecodable shard message (%d bytes)", len(data))
            return
        if isinstance(msg, m.PushBatchMessage | m.PushMessage):
            now_s = time.time()
            conns = self._conns
            for n in m.pushed(msg):
                conn = conns.get(n.device_id or "")
                if conn is not None:
                    self._apply(conn, conn.session.push(n, now_s))
        elif isinstance(msg, m.KickMessage):
            conn = self._conns.get(msg.device_id)
            if conn is not None:
                self._apply(conn, conn.session.kick(msg.epoch))
        elif isinstance(msg, m.DrainMessage):
            conn = self._conns.get(msg.device_id)
            if conn is not None:
                self._apply(conn, conn.session.request_drain())
        elif isinstance(msg, m.SettingsMessage):
            conn = self._conns.get(msg.device_id)
            if conn is not None:
                self._spawn(self._reload_settings(conn))

    async def _reload_settings(self, conn: _Conn) -> None:
        """The REST API changed the device's quiet hours."""
        try:
            async with self._store_gate:
                quiet = await self.core.store.get_quiet_hours(conn.session.device_id)
        except PushgwError as exc:
            log.warning("settings reload of %s failed: %s", conn.session.device_id, exc)
            return
        self._apply(conn, conn.session.quiet_saved("", quiet))

    async def _on_resubscribed(self) -> None:
        """Messages may have been lost; if Redis restarted, presence was lost too."""
        self._need_repair = True
        await self._repair()

    async def _repair(self) -> None:
        """Re-claim missing presence first, then drain (claim before drain, as
        on connect).  If Redis is not answering yet the presence loop retries."""
        try:
            await self._reclaim_missing()
        except Exception as exc:
            log.warning("presence re-claim failed, retrying: %s", exc)
            return
        self._need_repair = False
        for conn in list(self._conns.values()):
            self._apply(conn, conn.session.request_drain())

    async def _reclaim_missing(self) -> None:
        conns = [c for c in self._conns.values() if c.session.phase == s.Phase.OPEN]
        cfg = self.cfg
        for start in range(0, len(conns), 500):
            batch = conns[start : start + 500]
            found = await self.core.presence.lookup([c.session.device_id for c in batch])
            for conn, entry in zip(batch, found, strict=True):
                if entry is not None or conn.session.phase != s.Phase.OPEN:
                    continue
                device_id = conn.session.device_id
                epoch, replaced = await self.core.presence.claim(device_id, cfg.shard_id, cfg.presence_ttl_s)
                conn.session.epoch = epoch
                if replaced is not None and replaced.shard_id != cfg.shard_id:
                    await self.core.engine.kick(device_id, replaced, epoch)

    # -- periodic work -------------------------------------------------------------

    async def _ack_loop(self) -> None:
        interval = max(self.cfg.ack_flush_ms, 1) / 1000
        while True:
            await asyncio.sleep(interval)
            if self._push_writes:
                PUSH_WRITES.inc(self._push_writes)
                self._push_writes = 0
            if self._dirty:
                await self._flush_acks()

    async def _flush_acks(self) -> None:
        """All sessions' acks of one flush in few statements (ACK_BATCH pairs each)."""
        dirty, self._dirty = self._dirty, set()
        chunks: list[list[tuple[_Conn, list[int]]]] = [[]]
        room = ACK_BATCH
        for conn in dirty:
            ids = conn.session.take_acks()
            while ids:
                if room == 0:
                    chunks.append([])
                    room = ACK_BATCH
                part, ids = ids[:room], ids[room:]
                chunks[-1].append((conn, part))
                room -= len(part)
        await asyncio.gather(*(self._write_acks(c) for c in chunks if c))

    async def _flush_one(self, conn: _Conn) -> None:
        ids = conn.session.take_acks()
        if ids:
            await self._write_acks([(conn, ids)])

    async def _write_acks(self, batch: list[tuple[_Conn, list[int]]]) -> None:
        pairs = [(conn.session.device_id, i) for conn, ids in batch for i in ids]
        try:
            async with self._store_gate:
                await self.core.store.mark_delivered_many(pairs, _now_ms())
        except Exception as exc:  # the rows stay pending: redelivered, deduped by the SDK
            log.warning("ack flush of %d acks (%d devices) failed: %s", len(pairs), len(batch), exc)
            for conn, ids in batch:
                if conn.session.phase == s.Phase.OPEN:
                    self._apply(conn, conn.session.acks_failed(ids))
            return
        for conn, ids in batch:
            conn.session.acks_flushed(ids)

    async def _presence_loop(self) -> None:
        ttl = self.cfg.presence_ttl_s
        while True:
            await asyncio.sleep(0.5 if self._need_repair else max(ttl / 3, 0.5))
            if self._need_repair:
                await self._repair()
            entries = [(d, c.session.epoch) for d, c in self._conns.items() if c.session.phase == s.Phase.OPEN]
            try:
                await self.core.presence.refresh(self.cfg.shard_id, entries, ttl)
            except Exception as exc:
                # Redis may lose its data while we cannot reach it: repair when it is back.
                log.warning("presence refresh failed: %s", exc)
                self._need_repair = True

    async def _keepalive_loop(self) -> None:
        """Ping every open session each interval; close those whose pong has not
        come back within the timeout (1011, as websockets' own keepalive)."""
        interval, timeout = self.cfg.ws_ping_interval_s, self.cfg.ws_ping_timeout_s
        # The first round a whole interval after start-up (as websockets' own
        # keepalive after a connect), not in the middle of a reconnect storm.
        await asyncio.sleep(interval)
        while True:
            waiting: list[tuple[_Conn, asyncio.Future[float]]] = []
            for conn in list(self._conns.values()):
                if conn.session.phase != s.Phase.OPEN:
                    continue
                try:
                    waiting.append((conn, cast("asyncio.Future[float]", await conn.ws.ping())))
                except Exception:  # closing or closed: the handler cleans up
                    continue
            if timeout:
                await asyncio.sleep(timeout)
            for conn, pong in waiting:
                if pong.done():
                    if not pong.cancelled():
                        pong.exception()  # retrieve it: no "never retrieved" log
                elif conn.session.phase == s.Phase.OPEN:  # websockets settles the pong on close
                    self._spawn(conn.ws.close(1011, "keepalive ping timeout"))
            await asyncio.sleep(max(interval - timeout, 0.1) if timeout else interval)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _check_path(connection: ServerConnection, request: Request) -> Response | None:
    if request.path.split("?", 1)[0] != CONNECT_PATH:
        return connection.respond(HTTPStatus.NOT_FOUND, f"connect to {CONNECT_PATH}\n")
    return None


def _now_ms() -> int:
    return int(time.time() * 1000)
