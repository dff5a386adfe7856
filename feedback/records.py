"""Feedback records: one per token that stopped being valid.

The implementation lives in ``gateway.apns_bridge.invalidation`` so code in
``gateway``, ``provider_api`` and ``connection_server`` can call it without
importing ``feedback`` (DESIGN.md import rules); this module is its public
name on the feedback side.
"""

from __future__ import annotations

from gateway.apns_bridge.invalidation import KNOWN_REASONS, token_invalidated, webhook_event

__all__ = ["KNOWN_REASONS", "token_invalidated", "webhook_event"]
