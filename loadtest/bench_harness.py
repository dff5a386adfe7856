"""`python -m loadtest harness`: the named scenarios, a JSON result, an HTML report, ratios to Mosquitto.

    scripts/with-test-services.sh .venv/bin/python -m loadtest harness \
        [--scenarios connect,online,offline-drain,fan-out,mixed] [--no-mosquitto] [--size standard|large|tiny]
        [--devices N] [--connect-devices N] [--steps 1000,2000,5000] [--step-seconds S] ...
        [--out loadtest/results] [--update-benchmarks]

Needs TEST_PG_DSN and TEST_REDIS_URL (scripts/with-test-services.sh sets
them).  Everything runs on 127.0.0.0/8; every process started is stopped by
its pid.  Results go to loadtest/results/<timestamp>.json and .html.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from loadtest.harness import benchmarks_md, report, scenarios
from loadtest.harness.scenarios import Options

ALL = ("connect", "online", "offline-drain", "fan-out", "mixed")
COMPARED = ("online", "offline-drain")
ROOT = Path(__file__).resolve().parents[1]

# Sizes: "standard" fits `make bench` in ~10 minutes on this 2-core machine when it
# is quiet; "small" for a busy machine; "large" is the targets (100,000
# connections and fan-out; allow ~20 minutes).
SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(connect_devices=200, online_devices=100, steps=[100.0, 200.0], step_seconds=2.0, drain_devices=50,
                 drain_per_device=4, fanout_devices=100, mixed_devices=60, mixed_rate=100.0, mixed_seconds=6.0,
                 grace=5.0, procs=2),
    "small": dict(connect_devices=3_000, online_devices=2_000, steps=[500.0, 1000.0, 2000.0], step_seconds=6.0,
                  drain_devices=1_000, drain_per_device=10, fanout_devices=2_000, mixed_devices=1_000,
                  mixed_rate=500.0, mixed_seconds=15.0, procs=2),
    "standard": dict(connect_devices=10_000, online_devices=10_000, steps=[1000.0, 2000.0, 5000.0],
                     step_seconds=8.0, drain_devices=5_000, drain_per_device=10, fanout_devices=10_000,
                     mixed_devices=5_000, mixed_rate=1000.0, mixed_seconds=20.0, procs=4),
    "large": dict(connect_devices=100_000, online_devices=10_000, steps=[2000.0, 5000.0, 10000.0, 20000.0],
                  step_seconds=10.0, drain_devices=10_000, drain_per_device=20, fanout_devices=100_000,
                  mixed_devices=10_000, mixed_rate=2000.0, mixed_seconds=30.0, procs=6, shards=6),
}  # fmt: skip


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest harness", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--scenarios", default=",".join(ALL), help=f"comma-separated, from {','.join(ALL)}")
    p.add_argument("--size", choices=sorted(SIZES), default="standard")
    p.add_argument("--no-mosquitto", action="store_true", help="skip the side-by-side runs")
    p.add_argument("--shards", type=int)
    p.add_argument("--procs", type=int, help="load processes per fleet")
    p.add_argument("--devices", type=int, dest="online_devices", help="online scenario devices")
    p.add_argument("--connect-devices", type=int)
    p.add_argument("--connect-rate", type=float, help="cap on new connections/s (0 = no cap)")
    p.add_argument("--steps", help="online offered rates, comma-separated notifications/s")
    p.add_argument("--step-seconds", type=float)
    p.add_argument("--drain-devices", type=int)
    p.add_argument("--drain-per-device", type=int)
    p.add_argument("--fanout-devices", type=int)
    p.add_argument("--mixed-devices", type=int)
    p.add_argument("--mixed-rate", type=float)
    p.add_argument("--mixed-seconds", type=float)
    p.add_argument("--grace", type=float)
    p.add_argument("--inject-drop", type=int, default=0, help="(harness self-test) ack N pushes without counting them")
    p.add_argument("--inject-duplicate", type=int, default=0,
                   help="(harness self-test) leave N pushes unacked and drop the socket")  # fmt: skip
    p.add_argument("--out", default=str(ROOT / "loadtest" / "results"))
    p.add_argument("--update-benchmarks", action="store_true", help="write the figures into BENCHMARKS.md")
    return p.parse_args(argv)


def options(args: argparse.Namespace) -> Options:
    values: dict[str, Any] = dict(SIZES[args.size])
    for name in ("shards", "procs", "online_devices", "connect_devices", "connect_rate", "step_seconds",
                 "drain_devices", "drain_per_device", "fanout_devices", "mixed_devices", "mixed_rate",
                 "mixed_seconds", "grace", "inject_drop", "inject_duplicate"):  # fmt: skip
        if getattr(args, name, None) is not None:
            values[name] = getattr(args, name)
    if args.steps:
        values["steps"] = [float(x) for x in args.steps.split(",")]
    return Options(admin_dsn=os.environ["TEST_PG_DSN"], redis_url=os.environ["TEST_REDIS_URL"], **values)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    opt = options(args)
    wanted = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(wanted) - set(ALL)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    results: list[dict[str, Any]] = []
    started = time.time()
    for name in wanted:
        systems = ["pushgw"] + (["mosquitto"] if name in COMPARED and not args.no_mosquitto else [])
        for system in systems:
            print(f"== {name} ({system})", flush=True)
            t = time.time()
            try:
                if name == "connect":
                    res = await scenarios.connect(opt)
                elif name == "online":
                    res = await scenarios.online(opt, system)
                elif name == "offline-drain":
                    res = await scenarios.offline_drain(opt, system)
                elif name == "fan-out":
                    res = await scenarios.fan_out(opt)
                else:
                    res = await scenarios.mixed(opt)
            except Exception as exc:  # one failed scenario must not cost the others' figures
                import traceback

                traceback.print_exc()
                res = {"scenario": name, "target": system, "error": repr(exc), "params": {}, "figures": {},
                       "accounting": {}, "series": {}}  # fmt: skip
            res["wall_seconds"] = round(time.time() - t, 1)
            print(report.summary_line(res), flush=True)
            results.append(res)
    return report.document(results, argv=sys.argv, size=args.size, started=started, options=opt)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if not os.environ.get("TEST_PG_DSN") or not os.environ.get("TEST_REDIS_URL"):
        print("TEST_PG_DSN/TEST_REDIS_URL are not set: run inside scripts/with-test-services.sh", file=sys.stderr)
        return 2
    doc = asyncio.run(run(args))
    json_path, html_path = report.write(doc, Path(args.out))
    print(report.ratios_text(doc))
    print(f"JSON: {json_path}\nHTML: {html_path}")
    if args.update_benchmarks:
        benchmarks_md.update(ROOT / "BENCHMARKS.md", doc, json_path)
        print("BENCHMARKS.md updated")
    bad = [r for r in doc["results"] if r.get("error") or r.get("accounting", {}).get("lost")]
    return 1 if bad else 0
