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


def test_every_documented_default_is_the_real_default():
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    rows = re.findall(r"^\| `([a-z0-9_]+)`(?: / `([a-z0-9_]+)`)? \| ([^|]+) \|", DOC.read_text(), flags=re.M)
    assert len(rows) >= len(defaults) - 1  # tls_cert / tls_key share a row
    for first, second, cell in rows:
        for key in filter(None, (first, second)):
            default = defaults[key]
            if default in ("", 0) and cell.strip() == "empty":
                continue
            shown = re.match(r"`([^`]*)`", cell.strip())
            assert shown, f"{key}: the default column shows no value: {cell!r}"
            if isinstance(default, (int, float)) and not isinstance(default, bool):
                assert float(shown.group(1)) == default, (key, shown.group(1), default)
            else:
                assert shown.group(1) == str(default), (key, shown.group(1), default)
