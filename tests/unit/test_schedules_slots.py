"""Pure logic of schedules: the cron parser, slot arithmetic, payload rotation, digest summaries."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import pytest

from gateway.digest import summary_for, title_and_body
from gateway.schedules import due_slots, resume_slot, slot_apns_id, slot_payload
from gateway.schedules_cron import Cron, CronError
from gateway.store.schedules_store import DigestItem, Schedule

UTC = dt.UTC


def ms(y: int, mo: int, d: int, h: int = 0, mi: int = 0, tz: Any = UTC) -> int:
    return int(dt.datetime(y, mo, d, h, mi, tzinfo=tz).timestamp()) * 1000


def walk(cron: Cron, start_ms: int, n: int) -> list[int]:
    out, t = [], start_ms
    for _ in range(n):
        t = cron.next_after(t)
        out.append(t)
    return out


def test_cron_fields_steps_ranges_lists() -> None:
    c = Cron.parse("*/20 9-10 * * *")
    assert walk(c, ms(2030, 1, 1, 8, 59), 7) == [
        ms(2030, 1, 1, 9, 0), ms(2030, 1, 1, 9, 20), ms(2030, 1, 1, 9, 40),
        ms(2030, 1, 1, 10, 0), ms(2030, 1, 1, 10, 20), ms(2030, 1, 1, 10, 40), ms(2030, 1, 2, 9, 0),
    ]  # fmt: skip
    assert walk(Cron.parse("5,7 0 1 1,6 *"), ms(2030, 1, 1), 3) == [
        ms(2030, 1, 1, 0, 5), ms(2030, 1, 1, 0, 7), ms(2030, 6, 1, 0, 5),
    ]  # fmt: skip


def test_cron_next_is_strictly_after() -> None:
    c = Cron.parse("0 12 * * *")
    assert c.next_after(ms(2030, 1, 1, 12)) == ms(2030, 1, 2, 12)
    assert c.next_after(ms(2030, 1, 1, 12) - 1) == ms(2030, 1, 1, 12)


def test_cron_day_fields_or_when_both_restricted() -> None:
    # 2030-01-01 is a Tuesday.  "the 15th, or any Monday"
    c = Cron.parse("0 0 15 * 1")
    assert walk(c, ms(2030, 1, 1), 3) == [ms(2030, 1, 7), ms(2030, 1, 14), ms(2030, 1, 15)]
    # Only day-of-week restricted: Sundays, 0 and 7 both mean Sunday.
    assert Cron.parse("0 0 * * 7").next_after(ms(2030, 1, 1)) == ms(2030, 1, 6)
    assert Cron.parse("0 0 * * 0").next_after(ms(2030, 1, 1)) == ms(2030, 1, 6)


def test_cron_time_zone_and_dst() -> None:
    paris = Cron.parse("30 2 * * *", "Europe/Paris").tz
    c = Cron.parse("30 2 * * *", "Europe/Paris")
    # 2030-03-31: 02:00-03:00 does not exist in Paris; that day has no slot.
    assert c.next_after(ms(2030, 3, 30, 12, tz=paris)) == ms(2030, 4, 1, 2, 30, tz=paris)
    # 2030-10-27: 02:30 exists twice; it fires once.
    first = c.next_after(ms(2030, 10, 26, 12, tz=paris))
    assert first == ms(2030, 10, 27, 0, 30)  # 02:30 CEST = 00:30 UTC
    assert c.next_after(first) == ms(2030, 10, 28, 1, 30)  # next day 02:30 CET


@pytest.mark.parametrize(
    "expr",
    ["* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8", "*/0 * * * *", "a * * * *",
     "5-1 * * * *", "0 0 30 2 *"],
)  # fmt: skip
def test_cron_errors(expr: str) -> None:
    with pytest.raises(CronError):
        Cron.parse(expr).next_after(ms(2030, 1, 1))


def test_cron_unknown_zone() -> None:
    with pytest.raises(CronError, match="time zone"):
        Cron.parse("* * * * *", "Mars/Olympus")


def _schedule(**kw: Any) -> Schedule:
    fields: dict[str, Any] = dict(
        schedule_id="s1", app_id=1, target_kind="token", target="aa", topic=None, push_type="alert", priority=10,
        ttl_s=None, collapse_id=None, payloads=b'[{"n":0},{"n":1},{"n":2}]', every_s=20, cron=None, timezone="UTC",
        next_slot_ms=100_000, next_index=4, paused=False,
    )  # fmt: skip
    fields.update(kw)
    return Schedule(**fields)


def test_interval_due_slots_on_time_and_after_downtime() -> None:
    s = _schedule()
    assert due_slots(s, 100_000) == (100_000, 4, 1, 120_000)
    assert due_slots(s, 119_999) == (100_000, 4, 1, 120_000)
    # Down for a minute: slots 100, 120, 140, 160 s are due; the latest is 160 s (number 7).
    assert due_slots(s, 161_000) == (160_000, 7, 4, 180_000)


def test_cron_due_slots_walks_missed_minutes() -> None:
    start = ms(2030, 1, 1, 9, 0)
    s = _schedule(every_s=None, cron="*/10 * * * *", next_slot_ms=start, next_index=0)
    assert due_slots(s, start + 35 * 60_000) == (start + 30 * 60_000, 3, 4, start + 40 * 60_000)


def test_resume_skips_the_paused_slots() -> None:
    s = _schedule(paused=True)
    assert resume_slot(s, 50_000) == (100_000, 4)  # not yet due: unchanged
    assert resume_slot(s, 161_000) == (180_000, 8)


def test_payloads_rotate_and_live_activity_gets_the_slot_timestamp() -> None:
    s = _schedule()
    assert [json.loads(slot_payload(s, i, 0))["n"] for i in range(5)] == [0, 1, 2, 0, 1]
    la = _schedule(push_type="liveactivity", payloads=b'[{"aps":{"event":"update","content-state":{"v":1}}}]')
    doc = json.loads(slot_payload(la, 0, 1_800_000_123_456))
    assert doc["aps"]["timestamp"] == 1_800_000_123 and doc["aps"]["content-state"] == {"v": 1}


def test_slot_apns_id_is_deterministic_per_schedule_slot_token() -> None:
    a = slot_apns_id("s1", 100, "aa")
    assert a == slot_apns_id("s1", 100, "aa") and uuid.UUID(a).version == 5
    assert len({a, slot_apns_id("s1", 120, "aa"), slot_apns_id("s2", 100, "aa"), slot_apns_id("s1", 100, "bb")}) == 4


def _item(i: int, payload: bytes) -> DigestItem:
    return DigestItem(
        id=i, app_id=1, apns_id=f"id-{i}", token="aa", topic="com.x", device_id="d", kind="local", priority=5,
        payload=payload, accepted_at_ms=i, window_end_ms=99, summary_apns_id=None, summarized_at_ms=None,
    )  # fmt: skip


def test_summary_carries_count_latest_alert_and_ids() -> None:
    items = [_item(1, b'{"aps":{"alert":"old"}}'), _item(2, b'{"aps":{"alert":{"title":"Door","body":"opened"}}}')]
    n = summary_for(items)
    doc = json.loads(n.payload)
    assert doc["aps"]["alert"] == {"title": "Door", "body": "opened"}
    assert doc["pushgw_digest"] == {"count": 2, "apns_ids": ["id-1", "id-2"], "window_end_ms": 99}
    assert n.apns_id == summary_for(items).apns_id and n.token == "aa" and n.push_type == "alert"
    assert title_and_body(b'{"aps":{"alert":"x"}}') == (None, "x")
    assert title_and_body(b"not json") == (None, None)
