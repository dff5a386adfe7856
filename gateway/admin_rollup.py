"""What happened to notifications per app and minute, counted incrementally.

A full count over ``notifications`` costs as much as the retention keeps
(30 days by default); the admin statistics must not.  Each look reads only:

* the terminal transitions since the previous look (``done_at_ms`` in
  ``(last, now]``, through the ``notifications_done`` index, migration 025):
  delivered, expired, dropped, collapsed, ... per app, and Apple's answers
  per reason for relayed rows;
* the pending rows per app (the live backlog, through the pending partial
  indexes).

Accepted notifications follow by conservation: a row is pending from its
acceptance until its one terminal transition, so what an app accepted
between two looks is the change of its pending count plus its transitions.
The first look reads the window once (``start``); after that, counts go
into one-minute buckets kept in memory and the figures cover the last
``window_s`` seconds (whole minutes).  Transitions are read up to ``LAG_MS``
before now, so an ack whose transaction commits a moment after its
``done_at_ms`` is still seen.  A pending row deleted outright (none of the
store's paths does that today) would count as never accepted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

MINUTE_MS = 60_000
LAG_MS = 2_000
COUNTED = ("accepted", "pending", "delivered", "expired", "dropped", "collapsed", "discarded", "superseded",
           "relayed", "rejected")  # fmt: skip


class Rollup:
    def __init__(self, window_s: int) -> None:
        self.window_ms = window_s * 1000
        self.since_ms: int | None = None  # start of the first look's window (None: no look yet)
        self.last_ms = 0  # transitions up to here are counted
        self.pending: dict[int, int] = {}  # app -> pending rows at the last look
        self._minutes: dict[int, Counter[tuple[int, str]]] = defaultdict(Counter)  # minute -> (app, status) -> n
        self._bridge: dict[int, Counter[tuple[str, str]]] = defaultdict(Counter)  # minute -> (status, reason) -> n

    def start(
        self,
        hi_ms: int,
        pending_rows: list[dict[str, Any]],
        accepted_rows: list[dict[str, Any]],
        done_rows: list[dict[str, Any]],
    ) -> None:
        """The first look: the window so far, read once.

        A row accepted in the window is still pending or became terminal after
        its acceptance: ``pending_rows`` (app, accepted minute or None if
        before the window, n) give the pending count and the first kind,
        ``accepted_rows`` (app, accepted minute, n) the second;
        ``done_rows`` are the transitions in ``[window start, hi_ms]``.
        """
        self.since_ms = hi_ms - self.window_ms
        self.pending = {}
        for row in pending_rows:
            app_id, n = int(row["app_id"]), int(row["n"])
            self.pending[app_id] = self.pending.get(app_id, 0) + n
            if row["minute"] is not None:
                self._minutes[int(row["minute"])][(app_id, "accepted")] += n
        for row in accepted_rows:
            self._minutes[int(row["minute"])][(int(row["app_id"]), "accepted")] += int(row["n"])
        self._fold_done(done_rows)
        self.last_ms = hi_ms

    def add(self, hi_ms: int, done_rows: list[dict[str, Any]], pending_rows: list[dict[str, Any]]) -> None:
        """Fold in the transitions in ``(last_ms, hi_ms]`` and the pending counts read just now."""
        done_per_app = self._fold_done(done_rows)
        pending = {int(r["app_id"]): int(r["n"]) for r in pending_rows}
        minute = hi_ms // MINUTE_MS
        for app_id in pending.keys() | self.pending.keys() | done_per_app.keys():
            accepted = pending.get(app_id, 0) - self.pending.get(app_id, 0) + done_per_app[app_id]
            if accepted:
                self._minutes[minute][(app_id, "accepted")] += accepted
        self.pending = pending
        self.last_ms = hi_ms
        oldest = (hi_ms - self.window_ms) // MINUTE_MS
        for buckets in (self._minutes, self._bridge):
            for old in [m for m in buckets if m < oldest]:
                del buckets[old]

    def _fold_done(self, done_rows: list[dict[str, Any]]) -> Counter[int]:
        done_per_app: Counter[int] = Counter()
        for row in done_rows:
            app_id, n, minute = int(row["app_id"]), int(row["n"]), int(row["minute"])
            self._minutes[minute][(app_id, row["status"])] += n
            done_per_app[app_id] += n
            if row["bridge_reason"] is not None:  # a relay row: Apple's answer (or the bridge's)
                self._bridge[minute][(row["status"], row["bridge_reason"])] += n
        return done_per_app

    def per_app(self) -> dict[int, dict[str, int]]:
        out: dict[int, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTED, 0))
        for counts in self._minutes.values():
            for (app_id, status), n in counts.items():
                row = out[app_id]
                row[status] = row.get(status, 0) + n
        for app_id, n in self.pending.items():
            out[app_id]["pending"] = n
        return dict(out)

    def bridge(self) -> list[dict[str, Any]]:
        total: Counter[tuple[str, str]] = Counter()
        for counts in self._bridge.values():
            total.update(counts)
        ranked = sorted(((-n, s, r) for (s, r), n in total.items() if n))
        return [{"status": s, "reason": r or None, "count": -neg} for neg, s, r in ranked]
