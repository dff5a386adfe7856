"""Scenario sizes: small in `make test`, larger in `make bench-faults`.

Each size is read from ``PUSHGW_FAULT_<NAME>`` (the Makefile's bench-faults
target sets them), falling back to the small default the test passes.
"""

from __future__ import annotations

import os


def size(name: str, default: int) -> int:
    value = os.environ.get(f"PUSHGW_FAULT_{name.upper()}")
    return int(value) if value else default


def fuzz_examples(default: int) -> int:
    """hypothesis examples per property (PUSHGW_FAULT_FUZZ_SCALE multiplies them)."""
    return default * size("fuzz_scale", 1)
