"""Write a harness run's figures into BENCHMARKS.md, between markers, replacing the previous run's.

The section states the command, date, machine and load average, every
scenario's figures, the same-run pushgw/Mosquitto ratios, and each target
next to its figure (met or missed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loadtest.harness.report import PERSISTENCE_NOTE

BEGIN, END = "<!-- harness:begin -->", "<!-- harness:end -->"


def _find(doc: dict[str, Any], scenario: str, target: str) -> dict[str, Any] | None:
    for r in doc["results"]:
        if r["scenario"] == scenario and r["target"] == target and not r.get("error"):
            return r
    return None


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "**missed**")


def section(doc: dict[str, Any], json_path: Path | None = None) -> str:
    m = doc["machine"]
    lines = [
        BEGIN,
        "## Load-test harness (`make bench`)",
        "",
        f"`{doc['command']}` — {doc['started']}, {doc['seconds']:.0f} s; machine: {m['cpus']} cores, {m['memory']}, "
        f"Python {m['python']}, load average at the end {', '.join(map(str, m['loadavg']))}. "
        "Everything on loopback, the load generator on the same cores.",
        "",
    ]
    if json_path is not None:
        lines += [
            f"Full result: `{json_path.name}` (JSON and HTML with plots under `loadtest/results/`, not committed).",
            "",
        ]
    lines += ["| scenario | system | figures | accounting |", "|---|---|---|---|"]
    for r in doc["results"]:
        if r.get("error"):
            lines.append(f"| {r['scenario']} | {r['target']} | failed: `{r['error']}` | |")
            continue
        from loadtest.harness.report import summary_line

        body = summary_line(r).split(": ", 1)[1].rsplit("; accepted=", 1)[0]
        a = r.get("accounting") or {}
        acct = (
            f"{a.get('accepted', 0):,} accepted: {a.get('delivered_once', 0):,} once, "
            f"{a.get('delivered_more_than_once', 0)} more than once, {a.get('lost', 0)} lost"
            if a
            else ""
        )
        lines.append(f"| {r['scenario']} | {r['target']} | {body} | {acct} |")
    lines += cpu_table(doc)
    lines += ["", "Targets (issue 5, this 2-core machine, load generator on the same cores):", ""]
    lines += ["| target | figure | verdict |", "|---|---|---|"]
    c = _find(doc, "connect", "pushgw")
    if c:
        f = c["figures"]
        lines.append(f"| ≤ 10 KiB RSS per idle connection | {f['rss_per_connection_kib']} KiB at {f['connected']:,} "
                     f"connections | {_verdict(f['rss_per_connection_kib'] <= 10)} |")  # fmt: skip
        big = c["params"]["devices"] >= 100_000
        verdict = _verdict(f["connected"] >= 100_000) if big else "not run at this size"
        lines.append(f"| 100,000 connected devices | {f['connected']:,} connected, {f['failed']} failed | {verdict} |")
    ratios = doc.get("ratios", {})
    p = _find(doc, "online", "pushgw")
    if p and ratios.get("online"):
        top = p["figures"]["steps"][-1]
        r = ratios["online"][-1]
        ok = r["delivered_per_s"] is not None and r["delivered_per_s"] >= 1.0 and top["latency_ms"]["p99"] < 50
        lines.append(
            f"| online ≥ 1.0 x Mosquitto's delivered rate at p99 < 50 ms | at {top['offered_per_s']:.0f}/s offered: "
            f"{r['delivered_per_s']} x Mosquitto, p99 {top['latency_ms']['p99']:.1f} ms | {_verdict(ok)} |"
        )
    if ratios.get("offline-drain"):
        d = ratios["offline-drain"]
        figure = d["drain_per_s_after_connected"] or d["drain_per_s_overall"]
        lines.append(f"| offline drain ≥ 1.5 x Mosquitto's | {figure} x (after connected: "
                     f"{d['drain_per_s_after_connected']}, overall: {d['drain_per_s_overall']}) | "
                     f"{_verdict(figure is not None and figure >= 1.5)} |")  # fmt: skip
    fo = _find(doc, "fan-out", "pushgw")
    if fo:
        f = fo["figures"]
        t = f["time_to_last_delivery_s"]
        n = fo["params"]["devices"]
        verdict = _verdict(t is not None and t <= 5) if n >= 100_000 else f"not run at 100,000 ({n:,} here)"
        lines.append(f"| fan-out to 100,000 in ≤ 5 s | {t} s to {n:,} devices | {verdict} |")
    lost = sum((r.get("accounting") or {}).get("lost", 0) for r in doc["results"])
    lines.append(f"| 0 lost everywhere | {lost} lost | {_verdict(lost == 0)} |")
    lines += ["", PERSISTENCE_NOTE, ""]
    lines.append(END)
    return "\n".join(lines)


def cpu_table(doc: dict[str, Any]) -> list[str]:
    """CPU per delivered message (connect: per connection) by role, from each scenario's timeline."""
    rows = [(r["scenario"], r["target"], r["cpu"]) for r in doc["results"] if (r.get("cpu") or {}).get("cpu_s")]
    if not rows:
        return []
    roles: list[str] = []
    for _s, _t, cpu in rows:
        roles += [role for role in cpu["cpu_s"] if role not in roles]
    out = ["", "CPU by process role over each scenario's measured window: µs per delivered message "
           "(connect: per connection), and in brackets % of one core over the window.", "",
           "| scenario | system | " + " | ".join(roles) + " |", "|---|---|" + "---|" * len(roles)]  # fmt: skip
    for scenario, target, cpu in rows:
        per = cpu.get("cpu_us_per_message", {})
        pct = cpu.get("cpu_pct_of_window", {})
        cells = [f"{per[r]:,} ({pct.get(r, 0)}%)" if r in per else "" for r in roles]
        out.append(f"| {scenario} | {target} | " + " | ".join(cells) + " |")
    return out


def update(path: Path, doc: dict[str, Any], json_path: Path | None = None) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    new = section(doc, json_path)
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + new + tail
    else:
        marker = "\n## "
        at = text.find(marker)
        text = (text[:at] + "\n" + new + "\n" + text[at:]) if at >= 0 else (text.rstrip() + "\n\n" + new + "\n")
    path.write_text(text)
