"""Bus (shard doorbell) and presence backends.

``open_bus(cfg)`` is the only constructor callers need: Redis when
``cfg.redis_url`` is set (cluster deployment), in-process otherwise
(embedded).  Both returned objects share one Redis connection pool; closing
the bus closes it, so close the bus last.
"""

from __future__ import annotations

from gateway.bus.base import Bus, Presence, PresenceEntry, shard_channel
from gateway.config import Config

__all__ = ["Bus", "Presence", "PresenceEntry", "open_bus", "shard_channel"]


def open_bus(cfg: Config) -> tuple[Bus, Presence]:
    """Build (not yet started) bus and presence for this deployment."""
    if cfg.redis_url:
        from gateway.bus.redis_bus import RedisBus, make_client
        from gateway.bus.redis_presence import RedisPresence

        client = make_client(cfg.redis_url)
        return RedisBus(client, owns_client=True), RedisPresence(client, owns_client=False)
    from gateway.bus.local import LocalBus, LocalPresence

    return LocalBus(), LocalPresence()
