"""The core objects every process shares, built from one Config.

``Core.open(cfg)`` picks the backends (Postgres or SQLite store, Redis or
in-process bus) and wires the resolver and the delivery engine on top.
The provider API, the connection server and the workers receive a ``Core``
and never construct backends themselves.
"""

from __future__ import annotations

import logging

from gateway.authorize import TokenResolver
from gateway.bus import open_bus
from gateway.bus.base import Bus, Presence
from gateway.config import Config
from gateway.delivery import DeliveryEngine
from gateway.store.base import Store

log = logging.getLogger(__name__)


class Core:
    def __init__(
        self,
        cfg: Config,
        store: Store,
        bus: Bus,
        presence: Presence,
        *,
        resolver: TokenResolver | None = None,
        engine: DeliveryEngine | None = None,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.bus = bus
        self.presence = presence
        self.resolver = resolver or TokenResolver(store)
        self.engine = engine or DeliveryEngine(store, bus, presence)
        self._closed = False

    @classmethod
    async def open(cls, cfg: Config) -> Core:
        """Open the store (runs migrations) and start the bus."""
        from gateway.store import open_store

        store = await open_store(cfg)
        bus, presence = open_bus(cfg)
        try:
            await bus.start()
        except BaseException:
            await store.close()
            raise
        return cls(cfg, store, bus, presence)

    async def close(self) -> None:
        """Finish routing what was accepted, then close bus and store.

        Idempotent; the bus goes before the store because routing may still
        discard rows, and the presence shares the bus's Redis pool.
        """
        if self._closed:
            return
        self._closed = True
        try:
            await self.engine.close()
        except Exception:
            log.exception("delivery engine did not close cleanly")
        try:
            await self.bus.close()
        finally:
            await self.store.close()
