"""Store side of recurring schedules and digests (migrations 020, 021 and 022).

Kept out of postgres.py / sqlite.py so the accept path there stays one
concern: each backend class mixes in its half from here.  The records are
plain frozen structs; the rules about them (slots, windows, summaries) live
in gateway/schedules.py and gateway/digest.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

#: The list cursor before every schedule: (created_at_ms, schedule_id).
FIRST_PAGE: tuple[int, str] = (-1, "")


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    schedule_id: str
    app_id: int
    target_kind: str  # token | channel
    target: str
    topic: str | None
    push_type: str
    priority: int
    ttl_s: int | None
    collapse_id: str | None
    payloads: bytes  # JSON array of payload objects
    every_s: int | None
    cron: str | None
    timezone: str
    next_slot_ms: int
    next_index: int
    paused: bool
    fired: int = 0
    skipped: int = 0
    last_slot_ms: int | None = None
    last_error: str | None = None
    created_at_ms: int = 0


class DigestRule(msgspec.Struct, frozen=True, kw_only=True):
    app_id: int
    window_s: int
    max_priority: int
    push_types: tuple[str, ...]
    updated_at_ms: int = 0


class DigestItem(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    app_id: int
    apns_id: str
    token: str
    topic: str
    device_id: str | None
    kind: str
    priority: int
    payload: bytes
    accepted_at_ms: int
    window_end_ms: int
    summary_apns_id: str | None  # '' when the window closed without a summary (dropped_reason says why)
    summarized_at_ms: int | None
    dropped_reason: str | None = None  # 022: the token was unregistered before the window ended


class ScheduleStore(Protocol):
    async def create_schedule(self, s: Schedule) -> Schedule: ...

    async def get_schedule(self, app_id: int, schedule_id: str) -> Schedule | None: ...

    async def list_schedules(
        self, app_id: int, limit: int = 1000, after: tuple[int, str] = FIRST_PAGE
    ) -> list[Schedule]:
        """A page in creation order after ``after`` = (created_at_ms, schedule_id) of the last one seen."""

    async def delete_schedule(self, app_id: int, schedule_id: str) -> bool: ...

    async def set_schedule_paused(
        self,
        app_id: int,
        schedule_id: str,
        paused: bool,
        next_slot_ms: int | None = None,
        next_index: int | None = None,
    ) -> Schedule | None: ...

    async def due_schedules(self, now_ms: int, limit: int = 100) -> list[Schedule]: ...

    async def advance_schedule(
        self,
        schedule_id: str,
        from_slot_ms: int,
        next_slot_ms: int,
        next_index: int,
        *,
        fired_slot_ms: int | None,
        fired: int,
        skipped: int,
        error: str | None,
    ) -> bool:
        """Compare-and-set: only if next_slot_ms is still ``from_slot_ms``."""


class DigestStore(Protocol):
    async def set_digest_rule(self, rule: DigestRule) -> DigestRule: ...

    async def get_digest_rule(self, app_id: int) -> DigestRule | None: ...

    async def delete_digest_rule(self, app_id: int) -> bool: ...

    async def add_digest_item(self, item: DigestItem, window_ms: int) -> tuple[DigestItem, bool]:
        """Store an item in its token's open window (or a new one ending
        ``accepted_at_ms + window_ms``); returns it and whether the apns-id
        was already there (then the stored item is returned)."""

    async def get_digest_item(self, app_id: int, apns_id: str) -> DigestItem | None: ...

    async def due_digests(self, now_ms: int, limit: int = 1000) -> list[tuple[int, str]]:
        """(app_id, token) pairs with an unsummarized window that has ended."""

    async def digest_window(self, app_id: int, token: str, now_ms: int) -> list[DigestItem]: ...

    async def mark_digested(self, ids: Sequence[int], summary_apns_id: str, at_ms: int) -> int: ...

    async def drop_digested(self, ids: Sequence[int], reason: str, at_ms: int) -> int:
        """Close a window without a summary (its token is gone)."""

    async def purge_digest_items(self, older_than_ms: int, limit: int = 10_000) -> int: ...


def _schedule(row: Any) -> Schedule:
    d = dict(row)
    d["payloads"] = bytes(d["payloads"])
    d["paused"] = bool(d["paused"])
    return Schedule(**d)


def _rule(row: Any) -> DigestRule:
    d = dict(row)
    d["push_types"] = tuple(t for t in d["push_types"].split(",") if t)
    return DigestRule(**d)


def _item(row: Any) -> DigestItem:
    d = dict(row)
    d["payload"] = bytes(d["payload"])
    return DigestItem(**d)


def _schedule_args(s: Schedule) -> tuple[Any, ...]:
    return (
        s.schedule_id, s.app_id, s.target_kind, s.target, s.topic, s.push_type, s.priority, s.ttl_s, s.collapse_id,
        s.payloads, s.every_s, s.cron, s.timezone, s.next_slot_ms, s.next_index, s.paused, s.created_at_ms,
    )  # fmt: skip


def _item_args(i: DigestItem, window_ms: int) -> tuple[Any, ...]:
    return (
        i.app_id, i.apns_id, i.token, i.topic, i.device_id, i.kind, i.priority, i.payload, i.accepted_at_ms,
        i.accepted_at_ms + window_ms,
    )  # fmt: skip


class PostgresSchedulesMixin:
    """Mixed into PostgresStore (uses its _fetch/_fetchrow/_execute)."""

    _fetch: Any
    _fetchrow: Any
    _execute: Any

    async def create_schedule(self, s: Schedule) -> Schedule:
        return _schedule(await self._fetchrow("schedule_insert", *_schedule_args(s)))

    async def get_schedule(self, app_id: int, schedule_id: str) -> Schedule | None:
        row = await self._fetchrow("schedule_get", app_id, schedule_id)
        return _schedule(row) if row else None

    async def list_schedules(
        self, app_id: int, limit: int = 1000, after: tuple[int, str] = FIRST_PAGE
    ) -> list[Schedule]:
        return [_schedule(r) for r in await self._fetch("schedule_list", app_id, *after, limit)]

    async def delete_schedule(self, app_id: int, schedule_id: str) -> bool:
        return bool(await self._execute("schedule_delete", app_id, schedule_id))

    async def set_schedule_paused(
        self,
        app_id: int,
        schedule_id: str,
        paused: bool,
        next_slot_ms: int | None = None,
        next_index: int | None = None,
    ) -> Schedule | None:
        row = await self._fetchrow("schedule_set_paused", app_id, schedule_id, paused, next_slot_ms, next_index)
        return _schedule(row) if row else None

    async def due_schedules(self, now_ms: int, limit: int = 100) -> list[Schedule]:
        return [_schedule(r) for r in await self._fetch("schedule_due", now_ms, limit)]

    async def advance_schedule(
        self, schedule_id: str, from_slot_ms: int, next_slot_ms: int, next_index: int, *,
        fired_slot_ms: int | None, fired: int, skipped: int, error: str | None,
    ) -> bool:  # fmt: skip
        n = await self._execute(
            "schedule_advance", schedule_id, from_slot_ms, next_slot_ms, next_index, fired_slot_ms, fired, skipped,
            error,
        )  # fmt: skip
        return bool(n)

    async def set_digest_rule(self, rule: DigestRule) -> DigestRule:
        row = await self._fetchrow(
            "digest_rule_set", rule.app_id, rule.window_s, rule.max_priority, ",".join(rule.push_types),
            rule.updated_at_ms,
        )  # fmt: skip
        return _rule(row)

    async def get_digest_rule(self, app_id: int) -> DigestRule | None:
        row = await self._fetchrow("digest_rule_get", app_id)
        return _rule(row) if row else None

    async def delete_digest_rule(self, app_id: int) -> bool:
        return bool(await self._execute("digest_rule_delete", app_id))

    async def add_digest_item(self, item: DigestItem, window_ms: int) -> tuple[DigestItem, bool]:
        row = await self._fetchrow("digest_item_insert", *_item_args(item, window_ms))
        if row is not None:
            return _item(row), False
        existing = await self._fetchrow("digest_item_get", item.app_id, item.apns_id)
        return _item(existing), True

    async def get_digest_item(self, app_id: int, apns_id: str) -> DigestItem | None:
        row = await self._fetchrow("digest_item_get", app_id, apns_id)
        return _item(row) if row else None

    async def due_digests(self, now_ms: int, limit: int = 1000) -> list[tuple[int, str]]:
        return [(r["app_id"], r["token"]) for r in await self._fetch("digest_due_tokens", now_ms, limit)]

    async def digest_window(self, app_id: int, token: str, now_ms: int) -> list[DigestItem]:
        return [_item(r) for r in await self._fetch("digest_window_items", app_id, token, now_ms)]

    async def mark_digested(self, ids: Sequence[int], summary_apns_id: str, at_ms: int) -> int:
        return int(await self._execute("digest_mark", list(ids), summary_apns_id, at_ms))

    async def drop_digested(self, ids: Sequence[int], reason: str, at_ms: int) -> int:
        return int(await self._execute("digest_drop", list(ids), reason, at_ms))

    async def purge_digest_items(self, older_than_ms: int, limit: int = 10_000) -> int:
        return int(await self._execute("digest_purge", older_than_ms, limit))


class SqliteSchedulesMixin:
    """Mixed into SqliteStore (uses its _run/_q/_one/_exec on the store thread)."""

    _run: Any
    _q: Any
    _one: Any
    _exec: Any

    async def create_schedule(self, s: Schedule) -> Schedule:
        args = list(_schedule_args(s))
        args[15] = int(s.paused)
        return _schedule(await self._run(self._one, "schedule_insert", *args))

    async def get_schedule(self, app_id: int, schedule_id: str) -> Schedule | None:
        row = await self._run(self._one, "schedule_get", app_id, schedule_id)
        return _schedule(row) if row else None

    async def list_schedules(
        self, app_id: int, limit: int = 1000, after: tuple[int, str] = FIRST_PAGE
    ) -> list[Schedule]:
        return [_schedule(r) for r in await self._run(self._q, "schedule_list", app_id, *after, limit)]

    async def delete_schedule(self, app_id: int, schedule_id: str) -> bool:
        return bool(await self._run(self._exec, "schedule_delete", app_id, schedule_id))

    async def set_schedule_paused(
        self,
        app_id: int,
        schedule_id: str,
        paused: bool,
        next_slot_ms: int | None = None,
        next_index: int | None = None,
    ) -> Schedule | None:
        row = await self._run(
            self._one, "schedule_set_paused", app_id, schedule_id, int(paused), next_slot_ms, next_index
        )
        return _schedule(row) if row else None

    async def due_schedules(self, now_ms: int, limit: int = 100) -> list[Schedule]:
        return [_schedule(r) for r in await self._run(self._q, "schedule_due", now_ms, limit)]

    async def advance_schedule(
        self, schedule_id: str, from_slot_ms: int, next_slot_ms: int, next_index: int, *,
        fired_slot_ms: int | None, fired: int, skipped: int, error: str | None,
    ) -> bool:  # fmt: skip
        n = await self._run(
            self._exec, "schedule_advance", schedule_id, from_slot_ms, next_slot_ms, next_index, fired_slot_ms,
            fired, skipped, error,
        )  # fmt: skip
        return bool(n)

    async def set_digest_rule(self, rule: DigestRule) -> DigestRule:
        row = await self._run(
            self._one, "digest_rule_set", rule.app_id, rule.window_s, rule.max_priority, ",".join(rule.push_types),
            rule.updated_at_ms,
        )  # fmt: skip
        return _rule(row)

    async def get_digest_rule(self, app_id: int) -> DigestRule | None:
        row = await self._run(self._one, "digest_rule_get", app_id)
        return _rule(row) if row else None

    async def delete_digest_rule(self, app_id: int) -> bool:
        return bool(await self._run(self._exec, "digest_rule_delete", app_id))

    async def add_digest_item(self, item: DigestItem, window_ms: int) -> tuple[DigestItem, bool]:
        row = await self._run(self._one, "digest_item_insert", *_item_args(item, window_ms))
        if row is not None:
            return _item(row), False
        existing = await self._run(self._one, "digest_item_get", item.app_id, item.apns_id)
        return _item(existing), True

    async def get_digest_item(self, app_id: int, apns_id: str) -> DigestItem | None:
        row = await self._run(self._one, "digest_item_get", app_id, apns_id)
        return _item(row) if row else None

    async def due_digests(self, now_ms: int, limit: int = 1000) -> list[tuple[int, str]]:
        rows = await self._run(self._q, "digest_due_tokens", now_ms, limit)
        return [(r["app_id"], r["token"]) for r in rows]

    async def digest_window(self, app_id: int, token: str, now_ms: int) -> list[DigestItem]:
        return [_item(r) for r in await self._run(self._q, "digest_window_items", app_id, token, now_ms)]

    async def mark_digested(self, ids: Sequence[int], summary_apns_id: str, at_ms: int) -> int:
        return int(await self._run(self._exec, "digest_mark", json.dumps(list(ids)), summary_apns_id, at_ms))

    async def drop_digested(self, ids: Sequence[int], reason: str, at_ms: int) -> int:
        return int(await self._run(self._exec, "digest_drop", json.dumps(list(ids)), reason, at_ms))

    async def purge_digest_items(self, older_than_ms: int, limit: int = 10_000) -> int:
        return int(await self._run(self._exec, "digest_purge", older_than_ms, limit))
