"""Scenario sizes: small in `make test`, larger in `make bench-faults`.

Each size is read from ``PUSHGW_FAULT_<NAME>``; without it, the small
default the test passes times ``PUSHGW_FAULT_SCALE`` (1 unless set; the
Makefile's bench-faults target sets it).
"""

from __future__ import annotations

import os


def scale() -> int:
    return int(os.environ.get("PUSHGW_FAULT_SCALE") or 1)


def size(name: str, default: int) -> int:
    value = os.environ.get(f"PUSHGW_FAULT_{name.upper()}")
    return int(value) if value else default * scale()


def fuzz_examples(default: int) -> int:
    """hypothesis examples per property."""
    return size("fuzz_examples", default)
