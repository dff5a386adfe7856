"""Row conversion and checks for the batched relay methods of both stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gateway.store.base import RelayClaim, RelayOutcome
from gateway.store.group_commit import to_stored

FINAL_STATUSES = frozenset({"relayed", "rejected"})


def to_relay_claim(row: Any) -> RelayClaim:
    return RelayClaim(row=to_stored(row), attempts=row["relay_attempts"], environment=row["environment"])


def check_outcomes(outcomes: Sequence[RelayOutcome]) -> None:
    for _id, status, _reason, _apple_id in outcomes:
        if status not in FINAL_STATUSES:
            raise ValueError(f"finish_relay status must be relayed or rejected, not {status!r}")
