"""docs/configuration.md documents every Config key, and only real keys."""

import dataclasses
import re
from pathlib import Path

from gateway.config import Config

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_every_key_is_documented_and_no_stale_keys():
    text = DOC.read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_]+)`", text, flags=re.M))
    documented |= set(re.findall(r"/ `([a-z0-9_]+)` \|", text))
    fields = {f.name for f in dataclasses.fields(Config)}
    assert fields - documented == set(), "undocumented config keys"
    assert documented - fields == set(), "documented keys that do not exist"
