"""The decisions behind ``admit_background`` and ``admit_live_activities``,
shared by both store backends (which only load and save the state).

Background budget (per device, any hour): a notification already counted
(a resend after a lost connection) passes without counting again; new ones
pass while fewer than ``budget`` were sent in the last ``window_ms``; the rest
are over budget.  Of those only the newest stays pending (Apple keeps only
the newest background push); every older pending background push of the
device becomes ``superseded``.

Live Activity order (per activity = per push token): ``start`` always passes
and begins a new activity; after an ``end``, anything else becomes
``activity_ended`` (the end itself may be resent); an update whose timestamp
is older than the newest one sent becomes ``stale`` (equal passes: Apple
shows the newest, and a resend carries the same timestamp).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from schemas.notification import Status

SUPERSEDED_REASON: Final = "BackgroundBudget"
STALE_REASON: Final = "StaleTimestamp"
ENDED_REASON: Final = "ActivityEnded"


def background_budget(
    sent: Mapping[int, int], ids: Sequence[int], budget: int, window_ms: int, now_ms: int
) -> tuple[list[int], list[int], int | None]:
    """(new ids to count, ids over budget, retry time in ms) given ``sent`` =
    {notification id: sent at ms} of the last window."""
    count = len(sent)
    counted: list[int] = []
    over: list[int] = []
    for i in sorted(ids):
        if i in sent:
            continue
        if count < budget:
            counted.append(i)
            count += 1
        else:
            over.append(i)
    if not over:
        return counted, over, None
    # The budget frees when the oldest send of the window leaves it.
    oldest = min([*sent.values(), *([now_ms] if counted else [])], default=now_ms)
    return counted, over, oldest + window_ms


ActivityState = tuple[float, int | None]  # (newest timestamp sent, id of the end push)


def activity_order(
    state: ActivityState | None, notification_id: int, event: str, timestamp: float
) -> tuple[Status | None, ActivityState | None]:
    """(terminal status if refused, new state) for one Live Activity push."""
    if event == "start" or state is None:
        return None, (timestamp, notification_id if event == "end" else None)
    last, ended_id = state
    if ended_id is not None and notification_id != ended_id:
        return Status.ACTIVITY_ENDED, state
    if timestamp < last:
        return Status.STALE, state
    return None, (timestamp, notification_id if event == "end" else ended_id)


def refusal_reason(status: Status) -> str:
    return STALE_REASON if status is Status.STALE else ENDED_REASON
