"""Live Activity content rotation.

A device registers, starts a Live Activity (its push token is bound to
``<bundle>.push-type.liveactivity``), and the backend creates one recurring
schedule that updates the activity every 20 s, rotating through dashboard,
news, weather and calendar content states.  The gateway's worker fires the
schedule (on time, once per slot, also after restarts) and stamps each
update's ``timestamp`` with its slot time.

    python examples/live_activity_rotation.py --api-key KEY --bundle-id com.example.app
    # --period 2 --rotations 4 for a quick run
"""

from __future__ import annotations

import asyncio
import itertools
import time

from _support import Backend, Device, check, parser

CONTENT_STATES = [
    {"screen": "dashboard", "active_users": 1284, "alerts": 2},
    {"screen": "news", "headline": "Local team wins the cup", "source": "Daily Bugle"},
    {"screen": "weather", "city": "Lisbon", "temp_c": 21, "sky": "sunny"},
    {"screen": "calendar", "next": "Design review", "starts_in_min": 25},
]


def update(state: dict[str, object]) -> dict[str, object]:
    # The gateway replaces "timestamp" with each slot's time.
    return {"aps": {"event": "update", "timestamp": int(time.time()), "content-state": state}}


async def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--period", type=int, default=20, help="seconds between content updates")
    p.add_argument("--rotations", type=int, default=4, help="updates to watch before stopping")
    args = p.parse_args()
    backend = Backend(args.rest_url, args.api_key, args.bundle_id)
    try:
        creds = await backend.register_device(user_id="rotation-demo")
        activity_token = await backend.issue_token(creds["device_id"], args.bundle_id + ".push-type.liveactivity")
        print(f"device {creds['device_id']} started an activity, push token {activity_token[:16]}...", flush=True)
        async with Device(args.ws_url, creds["device_id"], creds["secret"]) as device:
            schedule = await backend.call(
                "POST",
                "/api/v1/schedules",
                {
                    "token": activity_token,
                    "push_type": "liveactivity",
                    "priority": 10,
                    "every_s": args.period,
                    "payloads": [update(s) for s in CONTENT_STATES],
                },
            )
            print(f"schedule {schedule['schedule_id']}: every {args.period} s", flush=True)
            try:
                timeout = args.period * (args.rotations + 1) + 15
                payloads = await device.wait_for(args.rotations, timeout)
            finally:
                await backend.call("DELETE", f"/api/v1/schedules/{schedule['schedule_id']}")
            for at, push, payload in device.pushes[: args.rotations]:
                print(
                    f"{time.strftime('%H:%M:%S', time.localtime(at))} {push.apns_id} {payload['aps']['content-state']}"
                )
        screens = [pl["aps"]["content-state"]["screen"] for pl in payloads]
        expected = [CONTENT_STATES[i % len(CONTENT_STATES)]["screen"] for i in range(args.rotations)]
        check(screens == expected, f"content rotated {' -> '.join(screens)}")
        stamps = [pl["aps"]["timestamp"] for pl in payloads]
        check(all(b - a == args.period for a, b in itertools.pairwise(stamps)), "one update per slot")
        check(len({push.apns_id for _, push, _ in device.pushes}) == len(device.pushes), "no update twice")
    finally:
        await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
