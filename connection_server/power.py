"""Battery first: which pushes a device session sends now, and which wait.

Every socket write wakes the device's radio, so the session groups pushes
into as few writes (bursts) as their priorities allow (docs/design.md,
"Power-aware delivery"):

* priority 10 goes out at once, and takes every held push with it;
* priority 5 waits up to ``power_window_s`` and then goes out as one burst;
* priority 1 goes out while the device says it is awake (held like priority 5),
  or with a priority-10 burst; while the device sleeps nothing else sends it;
* alerts inside the device's quiet hours wait until they end (time-sensitive
  and critical ones excepted), whatever their priority.

Nothing waits in memory: a waiting push stays pending in the store and the
burst re-reads it (a drain pass), so a shard that dies while holding pushes
loses nothing.  What the session remembers is only *that* something waits
and until when: ``Waits``, allocated on the first held push and dropped when
nothing waits any more, so an idle connection pays one empty slot.

The mode says what a drain pass (or a doorbell) may send:

    AUTO       doorbells, re-drains: priority 10 only (a page with one upgrades
               to P10_BURST)
    BURST      connect, power-window timer: 10 and 5, and 1 if awake
    P10_BURST  a priority-10 push with held ones, wake-up: everything
"""

from __future__ import annotations

import enum

import msgspec

from schemas.notification import StoredNotification
from schemas.quiet_hours import QuietHours, held_by_quiet_hours

#: Push types whose delivery depends on state kept in the store (per-device
#: background budget, per-activity ordering): the driver asks the store
#: before they are written to the socket.
ADMITTED_TYPES = frozenset({"background", "liveactivity"})


class Mode(enum.IntEnum):
    AUTO = 0
    BURST = 1
    P10_BURST = 2


class Verdict(enum.IntEnum):
    SEND = 0
    WINDOW = 1  # wait for the power window's burst (or a priority-10 push)
    SLEEP = 2  # priority 1 while asleep: wait for wake-up or a priority-10 burst
    QUIET = 3  # an alert inside quiet hours: wait until they end
    SKIP = 4  # expired: never sent (the sweeper settles it)


class PowerPolicy(msgspec.Struct, frozen=True):
    """Shared by all sessions of a shard (one pointer each)."""

    window_s: float = 0.0  # 0 = priority 5 goes out at once (v1 behaviour)

    @property
    def holds(self) -> bool:
        return self.window_s > 0


NO_HOLD = PowerPolicy()


class Waits:
    """What a session waits for; only exists while something waits."""

    __slots__ = ("armed", "hold_until", "quiet_until", "retry_at", "sleepers")

    def __init__(self) -> None:
        self.hold_until: float | None = None  # power-window burst due
        self.quiet_until: float | None = None  # quiet hours end: held alerts go out
        self.retry_at: float | None = None  # the background budget frees up
        self.sleepers = False  # priority-1 pushes wait for wake-up or a priority-10 burst
        self.armed: float | None = None  # the timer the driver holds for us

    def next_due(self) -> float | None:
        due = [t for t in (self.hold_until, self.quiet_until, self.retry_at) if t is not None]
        return min(due) if due else None

    @property
    def idle(self) -> bool:
        return not self.sleepers and self.next_due() is None and self.armed is None

    @property
    def held(self) -> bool:
        """Pushes that a priority-10 burst should take along."""
        return self.hold_until is not None or self.sleepers


def verdict(
    n: StoredNotification,
    mode: Mode,
    *,
    awake: bool,
    quiet: QuietHours | None,
    policy: PowerPolicy,
    now_s: float,
) -> Verdict:
    if n.expiration and n.expiration < now_s:
        return Verdict.SKIP
    if quiet is not None and quiet.active(now_s) and held_by_quiet_hours(n.push_type, n.payload):
        return Verdict.QUIET
    if n.priority >= 10:
        return Verdict.SEND
    if not policy.holds:
        mode = max(mode, Mode.BURST)  # no power window: 5 (and awake 1) at once
    if n.priority >= 5 or awake:
        return Verdict.SEND if mode >= Mode.BURST else Verdict.WINDOW
    return Verdict.SEND if mode == Mode.P10_BURST else Verdict.SLEEP
