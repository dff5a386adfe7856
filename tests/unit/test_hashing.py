"""Generated secrets and ids are safe to pass on a command line (gateway/store/hashing.py)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from gateway.store import hashing


def _draws(values: list[str]) -> Iterator[str]:
    yield from values


@pytest.mark.parametrize("make", [hashing.new_secret, hashing.new_device_id])
def test_a_value_starting_with_a_dash_is_drawn_again(monkeypatch: pytest.MonkeyPatch, make) -> None:  # type: ignore[no-untyped-def]
    draws = _draws(["-leading-dash", "--two", "fine-value"])
    monkeypatch.setattr(hashing.secrets, "token_urlsafe", lambda n: next(draws))
    assert make() == "fine-value"


def test_generated_keys_parse_as_option_values() -> None:
    # The failure this prevents: `example.py --api-key -Xy...` ends in
    # "argument --api-key: expected one argument" (1 key in 64 before).
    parser = argparse.ArgumentParser()
    parser.add_argument("--api-key", required=True)
    for _ in range(2000):
        key = hashing.new_secret()
        assert parser.parse_args(["--api-key", key]).api_key == key
        assert len(key) == 43  # 32 bytes, url-safe base64 without padding
