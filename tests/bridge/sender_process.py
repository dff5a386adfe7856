"""A bridge sender in its own process, for the crash test: ``python -m tests.bridge.sender_process <json>``.

The JSON holds the bridge_config arguments and the sender's knobs; the
process prints ``ready`` once it runs and relays until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from gateway.apns_bridge.sender import BridgeSender
from tests.integration.bridge_fixtures import bridge_config, make_store


async def main(args: dict[str, object]) -> None:
    cfg = bridge_config(Path(str(args["data_dir"])), str(args["dsn"]), int(str(args["port"])), str(args["ca"]))
    store = await make_store(cfg)
    sender = BridgeSender(cfg, store, worker_id="child", lease_ms=int(str(args["lease_ms"])), poll_interval_s=0.01)
    await sender.start()
    print("ready", flush=True)
    await asyncio.Event().wait()  # until SIGKILL


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
