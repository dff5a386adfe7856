"""Security-camera backend.

Cameras in several homes report events.  The backend scores each event
(a person at night matters more than a swaying tree), rate-limits pushes per
home with a token bucket, and sends the top events at once (priority 10).
Everything else is sent at priority 5, which the app's digest rule folds
into one summary push per window: the home owner gets "7 more events, latest:
..." instead of seven buzzes.

    python examples/security_camera.py --api-key KEY --bundle-id com.example.app --window 60
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

from _support import Backend, Device, check, parser

SCORES = {"person": 0.9, "package": 0.7, "vehicle": 0.5, "animal": 0.3, "motion": 0.1}
URGENT_SCORE = 0.7  # at or above: worth waking the owner


@dataclass
class TokenBucket:
    """``capacity`` pushes at once, refilled at ``rate_per_s``."""

    capacity: float
    rate_per_s: float
    tokens: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def take(self) -> bool:
        now = time.monotonic()
        if self.tokens < 0:
            self.tokens = self.capacity
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Event:
    home: str
    camera: str
    kind: str
    at_night: bool

    @property
    def score(self) -> float:
        return min(1.0, SCORES[self.kind] + (0.1 if self.at_night else 0.0))

    @property
    def text(self) -> str:
        return f"{self.kind} at the {self.camera} camera"


class CameraBackend:
    def __init__(self, backend: Backend, burst: int, rate_per_s: float) -> None:
        self.backend = backend
        self.tokens: dict[str, str] = {}  # home -> owner's device token
        self.buckets: dict[str, TokenBucket] = {}
        self.burst, self.rate = burst, rate_per_s
        self.urgent: dict[str, list[str]] = {}  # home -> apns-ids pushed at once
        self.folded: dict[str, list[str]] = {}  # home -> apns-ids left to the digest

    async def handle(self, events: list[Event]) -> None:
        # Highest score first, so the bucket is spent on what matters most.
        for e in sorted(events, key=lambda e: e.score, reverse=True):
            bucket = self.buckets.setdefault(e.home, TokenBucket(self.burst, self.rate))
            urgent = e.score >= URGENT_SCORE and bucket.take()
            payload = {"aps": {"alert": {"title": f"{e.home}: {e.kind}", "body": e.text}}, "score": e.score}
            sent = await self.backend.send(self.tokens[e.home], payload, priority=10 if urgent else 5)
            (self.urgent if urgent else self.folded).setdefault(e.home, []).append(sent["apns_id"])


def camera_events(homes: list[str], per_home: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    cams = ["front door", "driveway", "garden", "garage"]
    events = []
    for home in homes:
        kinds = ["person", "person", "package"] + [rng.choice(list(SCORES)) for _ in range(per_home - 3)]
        events += [Event(home, rng.choice(cams), k, at_night=rng.random() < 0.3) for k in kinds]
    rng.shuffle(events)
    return events


async def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--window", type=int, default=60, help="digest window in seconds")
    p.add_argument("--burst", type=int, default=2, help="urgent pushes a home may get at once")
    p.add_argument("--rate", type=float, default=1 / 60, help="urgent pushes per second per home, refilled")
    p.add_argument("--events", type=int, default=8, help="events per home")
    args = p.parse_args()
    backend = Backend(args.rest_url, args.api_key, args.bundle_id)
    try:
        rule = await backend.call("PUT", "/api/v1/digest", {"window_s": args.window, "max_priority": 5})
        print(f"digest rule: priority <= {rule['max_priority']} folded per {rule['window_s']} s", flush=True)
        cams = CameraBackend(backend, args.burst, args.rate)
        homes = ["home-a", "home-b"]
        devices = {}
        for home in homes:
            creds = await backend.register_device(user_id=home)
            cams.tokens[home] = await backend.issue_token(creds["device_id"])
            devices[home] = Device(args.ws_url, creds["device_id"], creds["secret"])
        for d in devices.values():
            await d.__aenter__()
        try:
            await cams.handle(camera_events(homes, args.events, seed=7))
            for home in homes:
                urgent, folded = cams.urgent.get(home, []), cams.folded.get(home, [])
                print(f"{home}: {len(urgent)} pushed at once, {len(folded)} folded into the digest", flush=True)
                check(len(urgent) <= args.burst, f"{home}: the token bucket capped urgent pushes at {args.burst}")
                pushes = await devices[home].wait_for(len(urgent) + 1, args.window + 30)
                got_urgent = [push.apns_id for _, push, _ in devices[home].pushes[: len(urgent)]]
                check(sorted(got_urgent) == sorted(urgent), f"{home}: top events arrived at once")
                digest = pushes[len(urgent)]["pushgw_digest"]
                print(f"{home}: digest {pushes[len(urgent)]['aps']['alert']} ({digest['count']} events)", flush=True)
                check(digest["apns_ids"] == folded, f"{home}: one summary stands for the {len(folded)} others")
                status = await backend.call("GET", f"/api/v1/notifications/{folded[0]}")
                check(status["status"] == "digested" and status["summary_apns_id"], f"{home}: originals point to it")
            await asyncio.sleep(1)
            for home in homes:
                check(len(devices[home].pushes) == len(cams.urgent.get(home, [])) + 1, f"{home}: nothing else")
        finally:
            for d in devices.values():
                await d.__aexit__()
            await backend.call("DELETE", "/api/v1/digest")
    finally:
        await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
