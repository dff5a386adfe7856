"""`python -m loadtest <scenario> [args]`: dispatch to loadtest/bench_<scenario>.py."""

from __future__ import annotations

import importlib
import sys


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m loadtest {harness,store,delivery,provider,rest,bridge} [options]")
        return 2
    name = argv[0].replace("-", "_")
    try:
        module = importlib.import_module(f"loadtest.bench_{name}")
    except ModuleNotFoundError:
        print(f"unknown scenario {argv[0]!r}", file=sys.stderr)
        return 2
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
