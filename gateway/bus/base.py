"""Bus (shard doorbell) and presence (device -> shard) interfaces.

Pub/sub is at-most-once: a message may be lost when Redis restarts or drops
a slow subscriber.  It is only a doorbell; the store is the truth.  That is
why a shard re-drains the backlog of every session it holds whenever its
subscription is (re-)established (``on_resubscribed``).

Backends: ``gateway.bus.redis`` (cluster) and ``gateway.bus.inprocess``
(embedded).  One contract suite runs against both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import msgspec

#: Called with each raw message published to the subscribed shard channel.
MessageHandler = Callable[[bytes], None]
#: Called after the subscription is (re)established: the shard must re-drain.
ResubscribedHandler = Callable[[], Awaitable[None]]


def shard_channel(shard_id: str) -> str:
    """Channel of one shard.  The ``{...}`` hash tag keeps every key and
    channel of one shard in one Redis Cluster slot (sharded pub/sub)."""
    return f"pushgw:{{shard:{shard_id}}}:inbox"


class PresenceEntry(msgspec.Struct, frozen=True, array_like=True):
    shard_id: str
    epoch: int


class Bus(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def publish(self, shard_id: str, message: bytes) -> None:
        """Queue a message; publishes of one loop tick go out in one pipeline.

        Never raises: a lost doorbell is repaired by the store (the row stays
        pending and is drained on resubscribe or reconnect).
        """

    async def flush(self) -> None:
        """Wait until everything queued so far was handed to the transport."""

    async def subscribe(
        self, shard_id: str, on_message: MessageHandler, on_resubscribed: ResubscribedHandler
    ) -> None: ...

    async def unsubscribe(self, shard_id: str) -> None: ...


class Presence(Protocol):
    async def claim(self, device_id: str, shard_id: str, ttl_s: int) -> tuple[int, PresenceEntry | None]:
        """Take the device for this shard.

        Returns the new connection epoch (strictly increasing per device) and
        the entry it replaced, if any, so the caller can tell the older
        connection's shard to close it (ghosting).
        """

    async def claim_many(
        self, device_ids: Sequence[str], shard_id: str, ttl_s: int
    ) -> list[tuple[int, PresenceEntry | None]]:
        """``claim`` for each device, in order, in one round trip."""

    async def lookup(self, device_ids: Sequence[str]) -> list[PresenceEntry | None]: ...

    async def refresh(self, shard_id: str, entries: Sequence[tuple[str, int]], ttl_s: int) -> None:
        """Extend the TTL of (device_id, epoch) entries still held by this shard."""

    async def release(self, device_id: str, epoch: int) -> None:
        """Remove the entry only if it still carries this epoch."""
