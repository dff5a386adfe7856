"""A small five-field cron expression: ``minute hour day-of-month month day-of-week``.

Each field is ``*``, a number, a range ``a-b``, a step ``*/n`` or ``a-b/n``,
or a comma list of those.  Day of week is 0-6 with Sunday 0 (7 is also
Sunday).  As in Vixie cron, when both day fields are restricted a day
matches if either does.  Names (``mon``, ``jan``) and ``@hourly`` shorthands
are not supported: the error says so.

Times are evaluated in an IANA time zone.  A wall-clock time that does not
exist (the hour skipped when DST starts) has no slot; one that exists twice
(when DST ends) fires once, at its first occurrence.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_BOUNDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
#: Far enough for any valid expression (Feb 29 on a given weekday recurs within 28 years).
_MAX_DAYS = 366 * 29


class CronError(ValueError):
    pass


def _field(text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    out: set[int] = set()
    for part in text.split(","):
        rng, _, step_text = part.partition("/")
        try:
            step = int(step_text) if step_text else 1
            if rng == "*":
                a, b = lo, hi
            elif "-" in rng:
                a_text, b_text = rng.split("-", 1)
                a, b = int(a_text), int(b_text)
            else:
                a = int(rng)
                b = hi if step_text else a
        except ValueError:
            raise CronError(f"{name}: {part!r} is not a number, range, step or '*'") from None
        if step < 1 or a < lo or b > hi or a > b:
            raise CronError(f"{name}: {part!r} is outside {lo}-{hi}")
        out.update(range(a, b + 1, step))
    return frozenset(out)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name!r}") from None


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool
    tz: ZoneInfo

    @classmethod
    def parse(cls, expr: str, timezone: str = "UTC") -> Cron:
        parts = expr.split()
        if len(parts) != 5:
            raise CronError("cron needs 5 fields: minute hour day-of-month month day-of-week")
        fields = [_field(p, *b) for p, b in zip(parts, _BOUNDS, strict=True)]
        weekdays = frozenset(d % 7 for d in fields[4])
        return cls(
            fields[0], fields[1], fields[2], fields[3], weekdays,
            days_restricted=parts[2] != "*", weekdays_restricted=parts[4] != "*", tz=zone(timezone),
        )  # fmt: skip

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return dom or dow
        return dom and dow

    def next_after(self, after_ms: int) -> int:
        """The first slot strictly after ``after_ms`` (epoch ms, minute resolution)."""
        start = dt.datetime.fromtimestamp(after_ms / 1000, self.tz)
        day = start.date()
        for _ in range(_MAX_DAYS):
            if self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        wall = dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=self.tz)
                        if not _exists(wall):
                            continue
                        ms = int(wall.timestamp()) * 1000
                        if ms > after_ms:
                            return ms
            day += dt.timedelta(days=1)
        raise CronError("the expression never matches (e.g. February 30)")


def _exists(wall: dt.datetime) -> bool:
    """False for a wall time inside a DST gap (it round-trips to another time)."""
    back = dt.datetime.fromtimestamp(wall.timestamp(), wall.tzinfo)
    return back.replace(tzinfo=None) == wall.replace(tzinfo=None)
