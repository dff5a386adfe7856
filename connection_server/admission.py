"""Admission: the store's word on pushes whose delivery depends on stored state.

Two push types are checked against per-device / per-activity state in the
store just before a burst is written (the session emits ``Admit``):

* ``background``: at most ``background_budget_per_hour`` per device in any
  hour (Apple: "don't send more than 2-3 per hour").  Beyond it the newest
  one waits for the budget and the older waiting ones become ``superseded``
  (Apple's device keeps only the newest background push).
* ``liveactivity``: per activity (its push token) an update older than the
  last one sent becomes ``stale``; anything but a new ``start`` after the
  activity's ``end`` becomes ``activity_ended``.

Both are settled in the store (terminal status with a reason, visible in the
notification status), so they are never redelivered.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.store.base import Store
from schemas.liveactivity import LIVE_ACTIVITY, activity_update
from schemas.notification import StoredNotification

BACKGROUND = "background"
HOUR_MS = 3_600_000


async def admit(
    store: Store, device_id: str, rows: Sequence[StoredNotification], budget: int, now_ms: int
) -> tuple[set[int], float | None]:
    """Ids among ``rows`` not to send now, and when the background budget frees (epoch s)."""
    refused: set[int] = set()
    retry_at_s: float | None = None
    background = sorted(n.id for n in rows if n.push_type == BACKGROUND)
    if background:
        over, retry_at_ms = await store.admit_background(device_id, background, budget, HOUR_MS, now_ms)
        refused.update(over)
        if retry_at_ms is not None:
            retry_at_s = retry_at_ms / 1000
    updates = sorted((n.id, n.token, *activity_update(n.payload)) for n in rows if n.push_type == LIVE_ACTIVITY)
    if updates:
        refused.update(await store.admit_live_activities(updates, now_ms))
    return refused, retry_at_s
