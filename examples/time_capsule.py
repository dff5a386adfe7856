"""Time capsule.

A sender seals a capsule for a recipient with an unlock time.  The backend
hands the gateway one push with ``deliver_at_ms`` = the unlock time and an
apns-id derived from the capsule id: the gateway stores it at once (durable
across restarts), holds it until the unlock time, and delivers it once.
Sealing again (a retry after a timeout, a double click) is answered as a
duplicate and sends nothing more.

    python examples/time_capsule.py --api-key KEY --bundle-id com.example.app --unlock-in 10
"""

from __future__ import annotations

import asyncio
import time
import uuid

from _support import Backend, Device, check, parser

CAPSULE_NS = uuid.UUID("a4c1d2e3-0f5b-4c6d-8e7f-9a0b1c2d3e4f")


async def seal(backend: Backend, recipient_token: str, capsule_id: str, message: str, unlock_ms: int) -> dict:  # type: ignore[type-arg]
    """The capsule's one push; its apns-id makes sealing idempotent."""
    return await backend.send(
        recipient_token,
        {"aps": {"alert": {"title": "A time capsule opened", "body": message}}, "capsule_id": capsule_id},
        apns_id=str(uuid.uuid5(CAPSULE_NS, capsule_id)),
        deliver_at_ms=unlock_ms,
    )


async def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--unlock-in", type=float, default=10.0, help="seconds until the capsule unlocks")
    args = p.parse_args()
    backend = Backend(args.rest_url, args.api_key, args.bundle_id)
    try:
        creds = await backend.register_device(user_id="recipient")
        token = await backend.issue_token(creds["device_id"])
        capsule_id = str(uuid.uuid4())
        unlock_ms = int((time.time() + args.unlock_in) * 1000)
        first = await seal(backend, token, capsule_id, "Open this in ten years: we did it!", unlock_ms)
        print(f"capsule {capsule_id} sealed until {time.strftime('%H:%M:%S', time.localtime(unlock_ms / 1000))}")
        check(first["status"] == "pending" and not first["duplicate"], "sealed: stored and waiting")
        again = await seal(backend, token, capsule_id, "Open this in ten years: we did it!", unlock_ms)
        check(again["duplicate"] and again["apns_id"] == first["apns_id"], "sealing twice is the same capsule")

        async with Device(args.ws_url, creds["device_id"], creds["secret"]) as device:
            await device.wait_for(1, args.unlock_in + 30)
            at, _, payload = device.pushes[0]
            print(f"recipient notified at {time.strftime('%H:%M:%S', time.localtime(at))}: {payload['aps']['alert']}")
            check(at * 1000 >= unlock_ms, "not before the unlock time")
            check(payload["capsule_id"] == capsule_id, "the right capsule")
            await asyncio.sleep(2)  # time for any second copy to show up
            check(len(device.pushes) == 1, "notified once")
        status = await backend.call("GET", f"/api/v1/notifications/{first['apns_id']}")
        check(status["status"] == "delivered", "status: delivered")
        # The recipient's next session (a new connection) gets nothing again.
        async with Device(args.ws_url, creds["device_id"], creds["secret"]) as later:
            await asyncio.sleep(1.5)
            check(later.pushes == [], "once only: a later session gets nothing")
    finally:
        await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
