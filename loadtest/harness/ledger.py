"""Accounting of every message id a scenario sent: delivered once, more than once, or lost.

Senders record the ids they had accepted; device swarms count what arrived,
per id.  Nothing here does I/O, so the arithmetic is tested on its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass
class Ledger:
    accepted: set[str] = field(default_factory=set)
    rejected: int = 0  # the provider side got a non-success answer: never promised, never owed
    received: Counter[str] = field(default_factory=Counter)

    def add_accepted(self, ids: Iterable[str]) -> None:
        self.accepted.update(ids)

    def add_received(self, counts: Mapping[str, int]) -> None:
        self.received.update(counts)

    def summary(self) -> dict[str, int]:
        once = dup = lost = 0
        for msg_id in self.accepted:
            n = self.received.get(msg_id, 0)
            if n == 0:
                lost += 1
            elif n == 1:
                once += 1
            else:
                dup += 1
        unexpected = sum(1 for msg_id in self.received if msg_id not in self.accepted)
        return {
            "accepted": len(self.accepted),
            "rejected": self.rejected,
            "delivered_once": once,
            "delivered_more_than_once": dup,
            "lost": lost,
            "unexpected": unexpected,  # arrived but never accepted (e.g. a 5xx that did commit)
        }
