"""docs/metrics.md's table and Prometheus text exposition, parsed."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
ROLES = ("provider", "shard", "worker")
_ROW = re.compile(r"^\|\s*`(pushgw_[a-z0-9_]+)`\s*\|\s*(\w+)\s*\|([^|]*)\|([^|]*)\|")


def documented() -> dict[str, dict[str, object]]:
    """name -> {type, labels, roles} for every row of the metrics table."""
    out: dict[str, dict[str, object]] = {}
    for line in DOC.read_text().splitlines():
        m = _ROW.match(line)
        if not m:
            continue
        labels = {x.strip(" `") for x in m.group(3).split(",") if x.strip(" `\u2013-")}
        where = m.group(4).strip()
        roles = set(ROLES) if where == "all" else {r.strip() for r in where.split(",")}
        assert roles <= set(ROLES), (m.group(1), roles)
        out[m.group(1)] = {"type": m.group(2), "labels": labels, "roles": roles}
    return out


def families(text: str) -> dict[str, tuple[str, set[str]]]:
    """Exposition -> {documented name: (type, label names seen)}.

    Counters are named with ``_total`` (as documented); label names come
    from the samples (histogram ``le`` and multiprocess ``pid`` aside).
    """
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
    out: dict[str, tuple[str, set[str]]] = {}
    samples = [line for line in text.splitlines() if line and not line.startswith("#")]
    for base, kind in types.items():
        if not base.startswith("pushgw_"):
            continue
        stem = base.removesuffix("_created")
        if base != stem and (types.get(stem + "_total") == "counter" or types.get(stem) == "histogram"):
            continue  # prometheus_client's creation-time companion of a counter or histogram
        name = base if kind != "counter" or base.endswith("_total") else base + "_total"
        sample_names = {base + s for s in ("", "_total", "_bucket", "_count", "_sum", "_created")}
        labels: set[str] = set()
        for line in samples:
            head = line.rpartition(" ")[0]
            if head.split("{")[0] in sample_names:
                labels |= set(re.findall(r'([a-zA-Z_]+)="', head))
        out[name] = (kind, labels - {"le", "pid"})
    return out


def sample_value(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        got = ",".join(sorted(re.findall(r'[a-z_]+="[^"]*"', head)))
        if got == want or (not labels and "{" not in head):
            total += float(value)
    return total
