"""Chat app.

The app registers its device with the backend (which uses its API key to
get device credentials and a token from the gateway).  When a message
arrives for the user, the backend stores it and sends a silent background
push (``content-available: 1``, priority 5); the device wakes, syncs its
inbox from the backend, and the backend then sends a badge update with the
unread count.

    python examples/chat.py --api-key KEY --bundle-id com.example.app
"""

from __future__ import annotations

import asyncio
from typing import Any

from _support import Backend, Device, check, parser


class ChatServer:
    """The app backend: message store, sync endpoint, and its pushes."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.inbox: dict[str, list[dict[str, str]]] = {}
        self.tokens: dict[str, str] = {}  # user -> device token
        self.synced = asyncio.Event()

    async def register(self, user: str) -> dict[str, str]:
        creds = await self.backend.register_device(user_id=user)
        self.tokens[user] = await self.backend.issue_token(creds["device_id"])
        return creds

    def post_message(self, sender: str, to: str, text: str) -> None:
        self.inbox.setdefault(to, []).append({"from": sender, "text": text, "read": ""})

    async def wake(self, user: str) -> None:
        """One silent push: no alert, no sound; the device syncs in the background."""
        silent = {"aps": {"content-available": 1}, "sync": "messages"}
        await self.backend.send(self.tokens[user], silent, push_type="background", priority=5)

    async def sync(self, user: str) -> list[dict[str, str]]:
        """What the device fetches when woken; then the badge follows."""
        messages = list(self.inbox.get(user, []))
        unread = sum(1 for m in messages if not m["read"])
        await self.backend.send(self.tokens[user], {"aps": {"badge": unread}}, priority=10)
        self.synced.set()
        return messages


async def main() -> None:
    args = parser(__doc__ or "").parse_args()
    backend = Backend(args.rest_url, args.api_key, args.bundle_id)
    server = ChatServer(backend)
    local_messages: list[dict[str, str]] = []
    try:
        creds = await server.register("bob")
        print(f"bob's device {creds['device_id']} registered", flush=True)

        async def on_push(_push: Any, payload: dict[str, Any]) -> None:
            aps = payload.get("aps", {})
            if aps.get("content-available") == 1 and payload.get("sync") == "messages":
                # A real app gets ~30 s of background time: fetch, do not block the socket.
                async def fetch() -> None:
                    local_messages[:] = await server.sync("bob")

                asyncio.ensure_future(fetch())

        async with Device(args.ws_url, creds["device_id"], creds["secret"], on_push=on_push) as device:
            server.post_message("alice", "bob", "Lunch at noon?")
            server.post_message("carol", "bob", "Slides are up")
            await server.wake("bob")
            await asyncio.wait_for(server.synced.wait(), 60)
            payloads = await device.wait_for(2, 60)
            print("device got:", payloads, flush=True)
            check(payloads[0] == {"aps": {"content-available": 1}, "sync": "messages"},
                  "a silent background push woke the device")  # fmt: skip
            check([m["text"] for m in local_messages] == ["Lunch at noon?", "Slides are up"], "the device synced")
            check(payloads[1] == {"aps": {"badge": 2}}, "then the badge shows the 2 unread messages")
            await asyncio.sleep(1)
            check(len(device.pushes) == 2, "nothing else arrived")
    finally:
        await backend.close()


if __name__ == "__main__":
    asyncio.run(main())
