"""Bridge metrics (module-level, bounded labels, cached children on the hot path)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "pushgw_bridge_requests_total",
    "Relay attempts to Apple by outcome",
    ["outcome"],  # relayed | rejected | invalid_token | retry | refresh | refused | unknown
)
LATENCY = Histogram(
    "pushgw_bridge_request_seconds",
    "Time from sending a request to Apple's answer",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
# Accept-to-send for relayed notifications: milliseconds when Apple answers
# at once, up to the ~1 hour of backoff of apns_max_attempts when it does not.
RELAY_LATENCY = Histogram(
    "pushgw_bridge_accept_to_relay_seconds",
    "Time from accepting a notification to Apple's 200 for it (retries included)",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
TOKEN_REFRESH = Counter("pushgw_bridge_token_refresh_total", "Provider JWTs re-minted after ExpiredProviderToken")

_CHILDREN = {
    o: REQUESTS.labels(o) for o in ("relayed", "rejected", "invalid_token", "retry", "refresh", "refused", "unknown")
}


def outcome(name: str) -> None:
    _CHILDREN[name].inc()


def observe(seconds: float) -> None:
    LATENCY.observe(seconds)


def relayed_after(seconds: float) -> None:
    RELAY_LATENCY.observe(max(0.0, seconds))


def token_refresh() -> None:
    TOKEN_REFRESH.inc()
