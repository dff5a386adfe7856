"""A device session's power state: what waits, until when, and what the
drain pass in progress may send.  No I/O and no actions.

``connection_server.power`` holds the rules (which push waits for what);
this module holds the per-connection state those rules act on, and the
decisions that update it:

* ``_plan``: which rows of a backlog page go out now (upgrading the pass to
  a priority-10 burst when one of them is urgent) and what the rest waits for;
* ``_hold`` / ``_rearm``: remember what waits and say when the driver's timer
  must fire next (``None``: the timer already armed is still right);
* ``_due``: at that timer, which drain pass is due;
* ``_budget_retry``: the background budget refused a push until ``retry_at``.

``PowerState`` is the slotted base class of ``connection_server.session.Session``
(not a separate object: one more object per connection would cost memory on
every idle socket, see docs/protocol.md "Server implementation").  Session
turns the timer times returned here into ``SetTimer`` actions and the drain
modes into ``Drain`` actions.
"""

from __future__ import annotations

from collections.abc import Sequence

from connection_server.power import NO_HOLD, Mode, PowerPolicy, Verdict, Waits, verdict
from schemas.notification import StoredNotification
from schemas.quiet_hours import QuietHours

Due = float | None  # when the driver's timer must fire; None = nothing new to arm


class PowerState:
    __slots__ = ("_mode", "_quiet", "_waits", "awake", "policy")

    def __init__(self, policy: PowerPolicy = NO_HOLD) -> None:
        self.policy = policy  # shared by the shard's sessions
        self.awake = True  # the device's own report (hello, state frames)
        self._mode = Mode.AUTO  # of the drain pass in progress
        self._waits: Waits | None = None  # allocated while something waits
        self._quiet: QuietHours | None = None

    # -- what the device reports -----------------------------------------------

    def _report_awake(self, awake: bool) -> bool:
        """Record the device's awake state; True when it just woke up (the
        radio is up anyway: everything held goes out with a P10_BURST)."""
        woke = awake and not self.awake
        self.awake = awake
        return woke

    def _quiet_changed(self, quiet: QuietHours | None) -> None:
        self._quiet = quiet
        if self._waits is not None:
            self._waits.quiet_until = None  # re-decided by the next drain pass

    # -- drain passes ----------------------------------------------------------

    def _upgrade(self, mode: Mode) -> None:
        """The drain pass in progress sends at least what ``mode`` allows."""
        self._mode = max(self._mode, mode)
        w = self._waits
        if w is not None and mode >= Mode.BURST:
            w.hold_until = None  # this pass sends them
            if mode == Mode.P10_BURST or self.awake:
                w.sleepers = False

    def _verdict(self, n: StoredNotification, mode: Mode, now_s: float) -> Verdict:
        return verdict(n, mode, awake=self.awake, quiet=self._quiet, policy=self.policy, now_s=now_s)

    def _plan(self, rows: Sequence[StoredNotification], now_s: float) -> tuple[list[StoredNotification], set[Verdict]]:
        """The rows of a backlog page to send now, and the verdicts of the others."""
        mode = self._mode
        verdicts = [self._verdict(n, mode, now_s) for n in rows]
        urgent = any(v == Verdict.SEND and n.priority >= 10 for n, v in zip(rows, verdicts, strict=True))
        if mode == Mode.AUTO and urgent and (Verdict.WINDOW in verdicts or Verdict.SLEEP in verdicts):
            # A priority-10 push is going out anyway: take the waiting ones along.
            self._upgrade(Mode.P10_BURST)
            mode = self._mode
            verdicts = [self._verdict(n, mode, now_s) for n in rows]
        send = [n for n, v in zip(rows, verdicts, strict=True) if v == Verdict.SEND]
        waiting = set(verdicts)
        waiting.discard(Verdict.SEND)
        return send, waiting

    @property
    def _holding(self) -> bool:
        """Pushes wait that a priority-10 push should take along."""
        return self._waits is not None and self._waits.held

    # -- waiting and the timer -------------------------------------------------

    def _hold(self, verdicts: set[Verdict], now_s: float) -> Due:
        """Remember what waits (the rows stay pending in the store)."""
        if verdicts == {Verdict.SKIP}:
            return None
        w = self._waits
        if w is None:
            w = self._waits = Waits()
        if Verdict.WINDOW in verdicts and w.hold_until is None:
            w.hold_until = now_s + self.policy.window_s
        if Verdict.SLEEP in verdicts:
            w.sleepers = True
        if Verdict.QUIET in verdicts and self._quiet is not None:
            end = self._quiet.ends_at(now_s)
            w.quiet_until = end if w.quiet_until is None else min(w.quiet_until, end)
        return self._rearm()

    def _budget_retry(self, retry_at_s: float) -> Due:
        """The background budget frees at ``retry_at_s``: a drain pass is due then."""
        w = self._waits
        if w is None:
            w = self._waits = Waits()
        w.retry_at = retry_at_s if w.retry_at is None else min(w.retry_at, retry_at_s)
        return self._rearm()

    def _rearm(self) -> Due:
        """The time the driver's timer must be set to, if it changed."""
        w = self._waits
        if w is None:
            return None
        due = w.next_due()
        if due is None or due == w.armed:
            if w.idle:
                self._waits = None  # nothing waits: an idle connection keeps one empty slot
            return None
        w.armed = due
        return due

    @property
    def _waiting(self) -> bool:
        return self._waits is not None

    def _due(self, now_s: float) -> Mode | None:
        """The driver's timer fired: the mode of the drain pass that is due, if any."""
        w = self._waits
        if w is None:
            return None
        w.armed = None
        mode: Mode | None = None
        if w.hold_until is not None and w.hold_until <= now_s:
            mode = Mode.BURST
        if w.quiet_until is not None and w.quiet_until <= now_s:
            w.quiet_until = None
            mode = Mode.AUTO if mode is None else mode
        if w.retry_at is not None and w.retry_at <= now_s:
            w.retry_at = None
            mode = Mode.AUTO if mode is None else mode
        return mode

    def _forget_waits(self) -> None:
        self._waits = None  # what waited is pending in the store
