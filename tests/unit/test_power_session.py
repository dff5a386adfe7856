"""Battery-first delivery in the sans-IO session: how many socket writes
(device wake-ups) a mixed workload costs, and what waits for what.

A driver executes the actions of one session call together, and consecutive
``Send`` actions are one socket write (connection_server/server.py), so a
write is counted per call that returned at least one ``Send``.
"""

from __future__ import annotations

import json

from connection_server.power import PowerPolicy
from connection_server.session import Admit, Drain, Send, Session, SetTimer
from schemas.notification import Status, StoredNotification, TokenKind
from schemas.quiet_hours import QuietHours

NOW = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
WINDOW_S = 30.0


def row(i: int, priority: int = 10, push_type: str = "alert", payload: bytes | None = None) -> StoredNotification:
    return StoredNotification(
        id=i,
        apns_id=f"00000000-0000-0000-0000-{i:012d}",
        app_id=1,
        token="ab" * 32,
        topic="com.example.app",
        payload=payload or b'{"aps":{"alert":"hi"},"n":%d}' % i,
        priority=priority,
        push_type=push_type,
        expiration=None,
        collapse_id=None,
        device_id="dev1",
        kind=TokenKind.LOCAL,
        status=Status.PENDING,
        accepted_at_ms=int(NOW * 1000),
    )


class Device:
    """One session plus the store's pending rows, driven like the shard drives it."""

    def __init__(self, window_s: float = WINDOW_S, v: int = 2, awake: bool = True, quiet: QuietHours | None = None):
        self.s = Session(64, PowerPolicy(window_s=window_s))
        self.pending: dict[int, StoredNotification] = {}
        self.writes = 0
        self.delivered: list[int] = []
        self.timer: float | None = None
        hello = {"type": "hello", "device_id": "dev1", "secret": "x", "v": v, "awake": awake}
        self.s.receive(json.dumps(hello).encode())
        self.run(self.s.authenticated("com.example.app", 1, 60.0, 16384, 0, quiet), NOW)
        self.writes = 0  # the welcome is the connection's own wake-up

    def run(self, actions: list, now: float) -> None:
        sends = [a for a in actions if isinstance(a, Send)]
        if sends:
            self.writes += 1
            for a in sends:
                frame = json.loads(a.data)
                pushes = frame["pushes"] if frame["type"] == "batch" else [frame] if frame["type"] == "push" else []
                ids = [p["id"] for p in pushes]
                self.delivered.extend(ids)
                for i in ids:
                    self.pending.pop(i, None)
                if ids:
                    self.run(self.s.receive(json.dumps({"type": "ack", "ids": ids}).encode()), now)
        for a in actions:
            if isinstance(a, Drain):
                rows = sorted(self.pending.values(), key=lambda n: (-n.priority, n.id))
                if a.after is not None:
                    rows = [n for n in rows if (-n.priority, n.id) > (-a.after[0], a.after[1])]
                self.run(self.s.drained(rows[: a.limit], a.limit, now), now)
            elif isinstance(a, SetTimer):
                self.timer = a.at_s
            elif isinstance(a, Admit):
                self.run(self.s.admitted(a.rows, set(), None), now)

    def commit(self, n: StoredNotification, now: float) -> None:
        """Accepted by the store, then the doorbell."""
        self.pending[n.id] = n
        self.run(self.s.push(n, now), now)

    def tick(self, now: float) -> None:
        if self.timer is not None and self.timer <= now:
            self.timer = None
            self.run(self.s.timer(now), now)


def mixed_workload(dev: Device) -> None:
    """Ten minutes of a typical app: chatter at priority 5 and 1, two urgent pushes."""
    i = 0
    for minute in range(10):
        t = NOW + minute * 60
        for k in range(3):
            i += 1
            dev.commit(row(i, priority=5), t + k)
            dev.tick(t + k)
        i += 1
        dev.commit(row(i, priority=1), t + 5)
        if minute in (3, 7):
            i += 1
            dev.commit(row(i, priority=10), t + 10)
        for second in range(11, 60, 5):
            dev.tick(t + second)


def test_mixed_workload_wakes_the_device_once_per_window_or_urgent_push() -> None:
    held = Device()
    mixed_workload(held)
    eager = Device(window_s=0)
    mixed_workload(eager)
    # 42 pushes; all of them are delivered either way ...
    assert sorted(held.delivered) == sorted(eager.delivered) == list(range(1, 43))
    assert held.pending == eager.pending == {}
    # ... but eagerly that is one write each, with a 30 s power window one burst
    # per window (10 minutes: 10 windows, the 2 urgent pushes flush theirs early).
    assert eager.writes == 42
    assert held.writes == 10


def test_priority_10_flushes_held_pushes_in_the_same_write() -> None:
    dev = Device()
    dev.commit(row(1, priority=5), NOW)
    dev.commit(row(2, priority=5), NOW + 1)
    assert dev.writes == 0 and dev.timer == NOW + WINDOW_S
    dev.commit(row(3, priority=10), NOW + 2)
    assert dev.writes == 1
    assert dev.delivered == [3, 1, 2]  # one batch, priority order
    dev.tick(NOW + WINDOW_S)  # the old timer finds nothing to do
    assert dev.writes == 1


def test_priority_10_alone_goes_out_at_once_as_a_single_push() -> None:
    dev = Device()
    actions = dev.s.push(row(1), NOW)
    assert [json.loads(a.data)["type"] for a in actions if isinstance(a, Send)] == ["push"]


def test_priority_1_waits_for_wake_up_or_priority_10_while_asleep() -> None:
    dev = Device(awake=False)
    dev.commit(row(1, priority=1), NOW)
    dev.commit(row(2, priority=5), NOW)
    dev.tick(NOW + WINDOW_S)
    assert dev.delivered == [2]  # the window burst leaves priority 1 to sleep
    dev.commit(row(3, priority=1), NOW + 40)
    dev.tick(NOW + 100)
    assert dev.delivered == [2]
    dev.commit(row(4, priority=10), NOW + 101)
    assert dev.delivered == [2, 4, 1, 3] and dev.writes == 2


def test_wake_up_sends_everything_held_in_one_write() -> None:
    dev = Device(awake=False)
    dev.commit(row(1, priority=1), NOW)
    dev.commit(row(2, priority=5), NOW)
    dev.run(dev.s.receive(b'{"type":"state","awake":true}'), NOW + 1)
    assert dev.delivered == [2, 1] and dev.writes == 1


def test_v1_burst_is_consecutive_push_frames_of_one_call() -> None:
    dev = Device(v=1)
    dev.commit(row(1, priority=5), NOW)
    dev.commit(row(2, priority=5), NOW)
    dev.tick(NOW + WINDOW_S)
    assert dev.writes == 1 and dev.delivered == [1, 2]


def test_connect_drain_is_a_burst_including_priority_5() -> None:
    s = Session(8, PowerPolicy(window_s=WINDOW_S))
    s.receive(b'{"type":"hello","device_id":"d","secret":"x","v":2}')
    s.authenticated("com.example.app", 1, 60.0, 16384, 0)
    [send] = [a for a in s.drained([row(1), row(2, priority=5), row(3, priority=1)], 8, NOW) if isinstance(a, Send)]
    assert [p["id"] for p in json.loads(send.data)["pushes"]] == [1, 2, 3]


def test_waiting_state_is_only_allocated_while_pushes_wait() -> None:
    dev = Device()
    assert dev.s._waits is None
    dev.commit(row(1, priority=5), NOW)
    assert dev.s._waits is not None
    dev.tick(NOW + WINDOW_S)
    assert dev.s._waits is None


def test_quiet_hours_hold_alerts_until_they_end_except_time_sensitive() -> None:
    # 22:13 UTC = 23:13 in Berlin (CET): inside 22:00-07:00; ends 06:00 UTC.
    quiet = QuietHours.parse("22:00", "07:00", "Europe/Berlin")
    dev = Device(quiet=quiet)
    dev.commit(row(1), NOW)
    urgent = b'{"aps":{"alert":"door","interruption-level":"time-sensitive"}}'
    dev.commit(row(2, payload=urgent), NOW + 1)
    dev.commit(row(3, push_type="background", priority=10), NOW + 2)  # not an alert: not held
    assert dev.delivered == [2, 3]
    end = quiet.ends_at(NOW)
    assert end == 1_700_028_000.0  # 2023-11-15 06:00 UTC
    assert dev.timer == end
    dev.tick(end)
    assert dev.delivered == [2, 3, 1]


def test_live_activity_and_background_rows_go_through_admission() -> None:
    s = Session(8, PowerPolicy(window_s=0))
    s.receive(b'{"type":"hello","device_id":"d","secret":"x","v":2}')
    s.authenticated("com.example.app", 1, 60.0, 16384, 0)
    s.drained([], 8, NOW)
    la = row(1, push_type="liveactivity")
    [admit] = s.push(la, NOW)
    assert admit == Admit((la,))
    assert s.admitted(admit.rows, {1}, None) == []  # refused: nothing written
    assert 1 not in s.inflight
    bg = row(2, priority=5, push_type="background")
    [admit] = s.push(bg, NOW)
    actions = s.admitted(admit.rows, {2}, NOW + 3600)
    assert actions == [SetTimer(NOW + 3600)]  # the budget frees in an hour: re-drain then
