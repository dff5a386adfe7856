"""Connection pools to Apple: one per (team, key, environment).

Apple binds a team (and, for topic keys, a key) to a connection at its first
push, so connections are never shared across teams; we also keep keys apart,
which avoids ``UnrelatedKeyIdInToken`` when a team has topic-specific keys.
A pool opens connections lazily, one at a time (Apple asks to stagger
setup), up to ``max_connections``, and puts each request on the connection
with the most free stream slots under the live SETTINGS limit.
"""

from __future__ import annotations

import asyncio
import collections
import ssl

from gateway.apns_bridge.client import APNsConnection, APNsResponse, RequestHeader, StreamRefused


def make_ssl_context(ca_file: str = "") -> ssl.SSLContext:
    """TLS 1.2+ with ALPN h2; ``ca_file`` replaces the system CAs (a test CA)."""
    ctx = ssl.create_default_context(cafile=ca_file or None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])
    return ctx


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class ConnectionPool:
    def __init__(
        self,
        host: str,
        port: int,
        ssl_ctx: ssl.SSLContext | None,
        *,
        max_connections: int = 4,
        max_streams_per_conn: int = 1000,
        connect_timeout: float = 10.0,
        ping_interval_s: float = 60.0,
    ) -> None:
        self.host = host
        self.port = port
        self._ssl = ssl_ctx
        self.max_connections = max_connections
        self._max_streams = max_streams_per_conn
        self._connect_timeout = connect_timeout
        self._ping_interval = ping_interval_s
        self._conns: list[APNsConnection] = []
        self._connecting = False
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._closed = False
        self.connects = 0

    @property
    def connections(self) -> list[APNsConnection]:
        return list(self._conns)

    def _notify(self) -> None:
        # Wake only as many waiters (FIFO) as there are free slots, plus one
        # that may open a connection: waking all of them on every finished
        # stream made the pool quadratic under load.
        if any(not (c.usable or c.in_flight) for c in self._conns):
            self._conns = [c for c in self._conns if c.usable or c.in_flight]
        free = sum(c.capacity for c in self._conns) + 1
        while self._waiters and free > 0:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def _pick(self) -> APNsConnection | None:
        best: APNsConnection | None = None
        best_cap = 0
        for conn in self._conns:
            cap = conn.capacity
            if cap > best_cap:
                best, best_cap = conn, cap
        return best

    async def request(self, headers: list[RequestHeader], body: bytes, timeout: float) -> APNsResponse:
        """Send on a connection with a free slot; waits for one up to ``timeout``.

        Raises ``StreamRefused`` if no slot came in time (nothing was sent)
        and whatever ``APNsConnection.send`` raises.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self._closed:
                raise StreamRefused("pool is closed")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StreamRefused("no free stream before the deadline")
            conn = self._pick()
            if conn is not None:
                # No await between the capacity check and send_headers.
                return await conn.send(headers, body, remaining)
            live = sum(1 for c in self._conns if c.usable)
            if live < self.max_connections and not self._connecting:
                await self._connect(remaining)
                continue
            waiter = loop.create_future()
            self._waiters.append(waiter)
            # A plain timer wakes us at the deadline (the loop top then gives up):
            # cheaper than asyncio.timeout() for the thousands of rows that queue here.
            timer = loop.call_at(deadline, _wake, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                if not waiter.done():
                    waiter.cancel()

    async def _connect(self, timeout: float) -> None:
        self._connecting = True
        try:
            conn = await APNsConnection.open(
                self.host,
                self.port,
                self._ssl,
                server_hostname=self.host,
                timeout=min(timeout, self._connect_timeout),
                max_streams_cap=self._max_streams,
                ping_interval_s=self._ping_interval,
                on_change=self._notify,
            )
            self.connects += 1
            if self._closed:
                conn.close()
                raise StreamRefused("pool is closed")
            self._conns.append(conn)
        finally:
            self._connecting = False
            self._notify()

    async def close(self) -> None:
        self._closed = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)  # they see the closed pool and raise
        self._waiters.clear()
        conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        for conn in conns:
            try:
                async with asyncio.timeout(2.0):
                    await conn.wait_closed()
            except TimeoutError:
                conn.abort()


class PoolRegistry:
    """Pools by (team id, key id, environment), created on first use."""

    def __init__(
        self,
        hosts: dict[str, str],
        port: int,
        ssl_ctx: ssl.SSLContext | None,
        *,
        max_connections: int = 4,
        max_streams_per_conn: int = 1000,
        ping_interval_s: float = 60.0,
    ) -> None:
        self._hosts = hosts  # environment -> host
        self._port = port
        self._ssl = ssl_ctx
        self._kw = {
            "max_connections": max_connections,
            "max_streams_per_conn": max_streams_per_conn,
            "ping_interval_s": ping_interval_s,
        }
        self._pools: dict[tuple[str, str, str], ConnectionPool] = {}

    def host_for(self, environment: str) -> str:
        return self._hosts[environment]

    def pool(
        self, team_id: str, key_id: str, environment: str, ssl_ctx: ssl.SSLContext | None = None
    ) -> ConnectionPool:
        """The pool of a token key, or of a client certificate (``ssl_ctx``
        presents it; pass ``"cert"`` and its fingerprint as team and key)."""
        key = (team_id, key_id, environment)
        pool = self._pools.get(key)
        if pool is None:
            ctx = ssl_ctx if ssl_ctx is not None else self._ssl
            pool = ConnectionPool(self._hosts[environment], self._port, ctx, **self._kw)  # type: ignore[arg-type]
            self._pools[key] = pool
        return pool

    async def close(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.close()
