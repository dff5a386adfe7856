"""Store side of device sessions in batches: connect and drain many devices at once.

A reconnect storm brings thousands of devices to a shard within seconds.
Asked one by one, each connect cost five round trips (device, app, overflow
-- a write and a commit even when there was nothing to take --, quiet hours,
first backlog page), and each round trip costs the shard and PostgreSQL far
more than the row itself.  The shard now collects the connects and backlog
reads that arrive together and asks once for all of them:

- ``connect_devices``: credentials checked, app bundle id, pending overflow
  count and quiet hours of many devices in one read (the overflow is then
  taken, with the existing ``take_overflow``, only for devices that have one);
- ``backlog_many``: one backlog page per (device, cursor, limit), each the
  page ``backlog`` would return.

Each backend class mixes in its half from here.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from gateway.store import hashing
from gateway.store.base import Device
from gateway.store.group_commit import now_ms, to_device, to_stored
from gateway.store.migrations import queries
from schemas.notification import StoredNotification
from schemas.quiet_hours import QuietHours

T = TypeVar("T")
#: A backlog page request: (device_id, limit, after) as ``backlog`` takes them.
PageRequest = tuple[str, int, "tuple[int, int] | None"]


class DeviceConnect(msgspec.Struct, frozen=True, kw_only=True):
    """What a shard needs to open an authenticated device's session."""

    device: Device
    bundle_id: str
    overflow: int  # pending overflow count (not taken yet)
    quiet: QuietHours | None


def _to_connect(row: Any, secret: str) -> DeviceConnect | None:
    if row is None or not hashing.verify_secret(secret, row["secret_hash"]):
        return None
    quiet = None
    if row["quiet_tz"] is not None:
        quiet = QuietHours(row["quiet_start_min"], row["quiet_end_min"], row["quiet_tz"])
    return DeviceConnect(device=to_device(row), bundle_id=row["bundle_id"], overflow=int(row["overflow"]), quiet=quiet)


def _cursor(after: tuple[int, int] | None) -> tuple[int, int]:
    return after if after is not None else (11, 0)


def _pages(n: int, rows: Sequence[Any]) -> list[list[StoredNotification]]:
    """Rows tagged with their 1-based ``request`` back into one page per request."""
    out: list[list[StoredNotification]] = [[] for _ in range(n)]
    for r in rows:
        out[r["request"] - 1].append(to_stored(r))
    for page in out:
        page.sort(key=lambda sn: (-sn.priority, sn.id))
    return out


class PostgresSessionsMixin:
    if TYPE_CHECKING:

        def _conn(self) -> contextlib.AbstractAsyncContextManager[Any]: ...

    async def connect_devices(self, credentials: Sequence[tuple[str, str]]) -> list[DeviceConnect | None]:
        """(device_id, secret) pairs -> the device's connect record, or None for a wrong credential."""
        if not credentials:
            return []
        ids = list({d for d, _ in credentials})
        async with self._conn() as conn:
            rows = await conn.fetch(_PG["connect_devices"], ids)
        found = {r["device_id"]: r for r in rows}
        return [_to_connect(found.get(d), secret) for d, secret in credentials]

    async def backlog_many(self, requests: Sequence[PageRequest]) -> list[list[StoredNotification]]:
        """One backlog page per request (a device may appear more than once)."""
        if not requests:
            return []
        at = now_ms()
        cursors = [_cursor(after) for _d, _l, after in requests]
        async with self._conn() as conn:
            rows = await conn.fetch(
                _PG["backlog_many"],
                [d for d, _l, _a in requests], [c[0] for c in cursors], [c[1] for c in cursors],
                [limit for _d, limit, _a in requests], at // 1000, at,
            )  # fmt: skip
        return _pages(len(requests), rows)


class SqliteSessionsMixin:
    if TYPE_CHECKING:

        @property
        def db(self) -> sqlite3.Connection: ...

        async def _run(self, fn: Callable[..., T], *args: Any) -> T: ...

        def _q(self, name: str, *args: Any) -> list[Any]: ...

    async def connect_devices(self, credentials: Sequence[tuple[str, str]]) -> list[DeviceConnect | None]:
        if not credentials:
            return []
        ids = json.dumps(list({d for d, _ in credentials}))
        rows = await self._run(self._q, "connect_devices", ids)
        found = {r["device_id"]: r for r in rows}
        return [_to_connect(found.get(d), secret) for d, secret in credentials]

    async def backlog_many(self, requests: Sequence[PageRequest]) -> list[list[StoredNotification]]:
        if not requests:
            return []
        return await self._run(self._backlog_many_sync, list(requests), now_ms())

    def _backlog_many_sync(self, requests: list[PageRequest], at: int) -> list[list[StoredNotification]]:
        pages = []
        for device_id, limit, after in requests:
            prio, last_id = _cursor(after)
            pages.append([to_stored(r) for r in self._q("backlog", device_id, at // 1000, at, prio, last_id, limit)])
        return pages


_PG = queries("postgres")
