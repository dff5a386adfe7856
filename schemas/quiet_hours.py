"""A device's quiet hours: a daily local-time span in an IANA time zone.

Set by the device (protocol v2 ``quiet`` frame) or through the REST API
(``PUT /api/v1/devices/{id}/quiet-hours``), stored per device and loaded by
the shard when the device connects.  While they are in force, alert pushes
are held (they stay pending in the store) until they end, except those with
``aps.interruption-level`` ``time-sensitive`` or ``critical``: Apple's Focus
modes let exactly those through.

The span may wrap midnight (22:00-07:00).  Times are wall-clock times of the
zone, so the span follows daylight-saving changes; a start or end that falls
in a skipped hour is resolved by ``zoneinfo`` (fold 0).
"""

from __future__ import annotations

import datetime as dt
import functools
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import UNSET, UnsetType, field

from schemas.errors import BadRequestParams

#: interruption levels that pass through quiet hours (Apple's Focus semantics).
BREAKS_THROUGH: Final = frozenset({"time-sensitive", "critical"})
MINUTES_PER_DAY: Final = 24 * 60


class QuietHours(msgspec.Struct, frozen=True):
    start_min: int  # minutes after local midnight
    end_min: int
    tz: str

    @classmethod
    def parse(cls, start: str, end: str, tz: str) -> QuietHours:
        """From "HH:MM" strings and a zone name; ``BadRequestParams`` if invalid."""
        start_min, end_min = _minutes(start), _minutes(end)
        if start_min == end_min:
            raise BadRequestParams("quiet hours start and end must differ")
        _zone(tz)
        return cls(start_min, end_min, tz)

    def clock(self) -> tuple[str, str]:
        return _hhmm(self.start_min), _hhmm(self.end_min)

    def active(self, now_s: float) -> bool:
        minute = self._local_minute(now_s)
        if self.start_min < self.end_min:
            return self.start_min <= minute < self.end_min
        return minute >= self.start_min or minute < self.end_min

    def ends_at(self, now_s: float) -> float:
        """Epoch seconds at which the span in force at ``now_s`` ends (``now_s`` if none is)."""
        if not self.active(now_s):
            return now_s
        zone = _zone(self.tz)
        local = dt.datetime.fromtimestamp(now_s, zone)
        end = local.replace(hour=self.end_min // 60, minute=self.end_min % 60, second=0, microsecond=0)
        if end <= local:
            end = (local + dt.timedelta(days=1)).replace(
                hour=self.end_min // 60, minute=self.end_min % 60, second=0, microsecond=0
            )
        # Aware arithmetic with one ZoneInfo is wall-clock arithmetic, and the
        # offset is looked up for the end's own date: DST changes are honoured.
        return max(end.timestamp(), now_s)

    def _local_minute(self, now_s: float) -> int:
        local = dt.datetime.fromtimestamp(now_s, _zone(self.tz))
        return local.hour * 60 + local.minute


class QuietHoursBody(msgspec.Struct, frozen=True):
    """REST body: ``{"start": "22:00", "end": "07:00", "tz": "Europe/Berlin"}``."""

    start: str
    end: str
    tz: str


class _Aps(msgspec.Struct, frozen=True):
    level: str | UnsetType = field(name="interruption-level", default=UNSET)


class _Body(msgspec.Struct, frozen=True):
    aps: _Aps | UnsetType = UNSET


_reader: Final = msgspec.json.Decoder(_Body)


def held_by_quiet_hours(push_type: str, payload: bytes) -> bool:
    """Whether quiet hours hold this push: alerts, unless time-sensitive or critical."""
    if push_type != "alert":
        return False
    try:
        body = _reader.decode(payload)
    except msgspec.DecodeError:
        return True
    return body.aps is UNSET or body.aps.level not in BREAKS_THROUGH


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise BadRequestParams(f"unknown time zone {name[:64]!r}") from None


def _minutes(clock: str) -> int:
    try:
        hours, minutes = clock.split(":")
        value = int(hours) * 60 + int(minutes)
        if len(hours) != 2 or len(minutes) != 2 or not (0 <= int(minutes) < 60) or not (0 <= value < MINUTES_PER_DAY):
            raise ValueError
    except ValueError:
        raise BadRequestParams(f"quiet hours time {clock[:16]!r} is not HH:MM") from None
    return value


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
