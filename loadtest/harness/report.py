"""The run's document: JSON result file, self-contained HTML report, same-run ratios to Mosquitto."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from html import escape
from pathlib import Path
from typing import Any

from loadtest.harness.svg import line_chart

PERSISTENCE_NOTE = (
    "Mosquitto's persistence is a periodic snapshot (autosave); pushgw commits every accepted "
    "notification to PostgreSQL before it answers, so an accepted message survives a crash."
)


def machine() -> dict[str, Any]:
    import os

    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    mem = ""
    try:
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    except OSError:
        pass
    return {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "kernel": platform.release(), "memory": mem, "loadavg": [round(x, 2) for x in load]}  # fmt: skip


def document(
    results: list[dict[str, Any]], *, argv: list[str], size: str, started: float, options: Any
) -> dict[str, Any]:
    opts = dataclasses.asdict(options) if dataclasses.is_dataclass(options) and not isinstance(options, type) else {}
    opts.pop("admin_dsn", None)
    opts.pop("redis_url", None)
    doc = {
        "command": " ".join(["python -m loadtest harness", *argv[2:]]) if argv[1:2] == ["harness"] else " ".join(argv),
        "size": size,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "seconds": round(time.time() - started, 1),
        "machine": machine(),
        "options": opts,
        "results": results,
    }
    doc["ratios"] = ratios(results)
    return doc


def _find(results: list[dict[str, Any]], scenario: str, target: str) -> dict[str, Any] | None:
    for r in results:
        if r["scenario"] == scenario and r["target"] == target and not r.get("error"):
            return r
    return None


def _ratio(a: Any, b: Any) -> float | None:
    return round(a / b, 3) if isinstance(a, int | float) and isinstance(b, int | float) and b else None


def ratios(results: list[dict[str, Any]]) -> dict[str, Any]:
    """pushgw / mosquitto from the same run (rates: higher is better; latencies and times: lower is better)."""
    out: dict[str, Any] = {}
    p, m = _find(results, "online", "pushgw"), _find(results, "online", "mosquitto")
    if p and m:
        steps = []
        for sp, sm in zip(p["figures"]["steps"], m["figures"]["steps"], strict=False):
            steps.append({
                "offered_per_s": sp["offered_per_s"],
                "delivered_per_s": _ratio(sp["delivered_per_s"], sm["delivered_per_s"]),
                "p99_latency": _ratio(sp["latency_ms"]["p99"], sm["latency_ms"]["p99"]),
            })  # fmt: skip
        out["online"] = steps
    p, m = _find(results, "offline-drain", "pushgw"), _find(results, "offline-drain", "mosquitto")
    if p and m:
        fp, fm = p["figures"], m["figures"]
        out["offline-drain"] = {
            "drain_per_s_after_connected": _ratio(fp["drain_per_s_after_connected"], fm["drain_per_s_after_connected"]),
            "drain_per_s_overall": _ratio(fp["drain_per_s_overall"], fm["drain_per_s_overall"]),
            "time_to_empty": _ratio(fp["time_to_empty_s"], fm["time_to_empty_s"]),
            "reconnects_per_s": _ratio(fp["reconnects_per_s"], fm["reconnects_per_s"]),
        }
    return out


def summary_line(r: dict[str, Any]) -> str:
    if r.get("error"):
        return f"   {r['scenario']} ({r['target']}): FAILED {r['error']}"
    f, a = r["figures"], r.get("accounting", {})
    acct = (f"accepted={a.get('accepted', 0):,} once={a.get('delivered_once', 0):,} "
            f"dup={a.get('delivered_more_than_once', 0)} lost={a.get('lost', 0)}") if a else ""  # fmt: skip
    if r["scenario"] == "connect":
        body = (f"{f['connected']:,} connected, {f['failed']} failed, {f['connects_per_s']:,}/s, "
                f"{f['rss_per_connection_kib']} KiB RSS per connection")  # fmt: skip
    elif r["scenario"] == "online":
        body = "; ".join(
            f"{s['offered_per_s']:.0f}/s offered: {s['accepted_per_s']:,} acc/s {s['delivered_per_s']:,} dlv/s "
            f"p50 {s['latency_ms']['p50']:.1f} p99 {s['latency_ms']['p99']:.1f} p99.9 {s['latency_ms']['p99.9']:.1f} ms"
            for s in f["steps"]
        )
    elif r["scenario"] == "offline-drain":
        body = (f"{f['stored']:,} stored; reconnect {f['reconnect_seconds']} s ({f['reconnects_per_s']:,}/s); "
                f"empty after {f['time_to_empty_s']} s; drain {f['drain_per_s_after_connected']}/s after connected, "
                f"{f['drain_per_s_overall']}/s overall")  # fmt: skip
    elif r["scenario"] == "fan-out":
        body = (
            f"{f['accepted']} accepted in {f['accept_seconds']} s; last delivery after {f['time_to_last_delivery_s']} s"
        )
    else:
        body = f"recovery {f['recovery_s']} s, {f['reconnects']} reconnects, p99 {f['latency_ms']['p99']:.1f} ms"
    return f"   {r['scenario']} ({r['target']}): {body}; {acct}"


def ratios_text(doc: dict[str, Any]) -> str:
    lines = []
    rt = doc.get("ratios", {})
    for step in rt.get("online", []):
        lines.append(
            f"online @ {step['offered_per_s']:.0f}/s: pushgw/mosquitto delivered/s = {step['delivered_per_s']}, "
            f"p99 latency = {step['p99_latency']}"
        )
    if "offline-drain" in rt:
        d = rt["offline-drain"]
        lines.append(f"offline-drain: pushgw/mosquitto drain/s after connected = {d['drain_per_s_after_connected']}, "
                     f"overall = {d['drain_per_s_overall']}, time to empty = {d['time_to_empty']}")  # fmt: skip
    if lines:
        lines.append(PERSISTENCE_NOTE)
    return "\n".join(lines)


# -- files -------------------------------------------------------------------------------


def write(doc: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("harness-%Y%m%d-%H%M%S", time.gmtime())
    json_path, html_path = out_dir / f"{stem}.json", out_dir / f"{stem}.html"
    json_path.write_text(json.dumps(doc, indent=1, default=str))
    html_path.write_text(html(doc))
    for name, path in (("latest.json", json_path), ("latest.html", html_path)):
        link = out_dir / name
        link.unlink(missing_ok=True)
        link.symlink_to(path.name)
    return json_path, html_path


def _xy(samples: list[dict[str, Any]], key: str, scale: float = 1.0) -> list[tuple[float, float]]:
    return [(s["t"], s[key] * scale) for s in samples if s.get(key) is not None]


def _charts(r: dict[str, Any]) -> list[str]:
    tl = r.get("series", {}).get("timeline", [])
    lat = r.get("series", {}).get("latency", [])
    charts = []
    if lat:
        p50 = [(x["t"], x["p50"]) for x in lat]
        p99 = [(x["t"], x["p99"]) for x in lat]
        charts.append(line_chart("latency over time (send to receive)", "s", "ms", [("p50", p50), ("p99", p99)]))
    if tl:
        thr = [("delivered/s", _xy(tl, "delivered_per_s"))]
        if any(s.get("accepted") for s in tl):
            thr.insert(0, ("accepted/s", _xy(tl, "accepted_per_s")))
        charts.append(line_chart("throughput over time", "s", "messages/s", thr))
        charts.append(line_chart("connections", "s", "devices", [("connected", _xy(tl, "connected"))]))
        charts.append(line_chart("server RSS", "s", "MiB", [("RSS", _xy(tl, "server_rss_kib", 1 / 1024))]))
    return charts


def _table(d: dict[str, Any]) -> str:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            v = ", ".join(f"{kk}={vv}" for kk, vv in v.items())
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            v = "<br>".join(escape(json.dumps(x)) for x in v)
            rows.append(f"<tr><th>{escape(str(k))}</th><td>{v}</td></tr>")
            continue
        rows.append(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def _steps_table(r: dict[str, Any]) -> str:
    steps = r["figures"].get("steps") or []
    cols = ("offered/s", "accepted/s", "delivered/s", "p50", "p90", "p99", "p99.9", "max (ms)")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
    body = "".join(
        f"<tr><td>{s['offered_per_s']:.0f}</td><td>{s['accepted_per_s']:,}</td><td>{s['delivered_per_s']:,}</td>"
        + "".join(f"<td>{s['latency_ms'][k]:.1f}</td>" for k in ("p50", "p90", "p99", "p99.9", "max"))
        + "</tr>"
        for s in steps
    )
    return f"<table>{head}{body}</table>" if steps else ""


def html(doc: dict[str, Any]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>pushgw load test</title><style>",
        "body{font-family:sans-serif;margin:24px;max-width:1400px} table{border-collapse:collapse;margin:8px 0}",
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}",
        ".charts{display:flex;flex-wrap:wrap;gap:8px}",
        ".bad{color:#b00;font-weight:bold} .ok{color:#070}</style></head><body>",
        "<h1>pushgw load test</h1>",
        f"<p><code>{escape(doc['command'])}</code><br>started {escape(doc['started'])}, {doc['seconds']} s</p>",
        _table(doc["machine"]),
    ]
    if doc.get("ratios"):
        parts.append("<h2>pushgw / Mosquitto (same run)</h2><pre>" + escape(ratios_text(doc)) + "</pre>")
    for r in doc["results"]:
        parts.append(f"<h2>{escape(r['scenario'])} — {escape(r['target'])}</h2>")
        if r.get("error"):
            parts.append(f"<p class='bad'>failed: {escape(r['error'])}</p>")
            continue
        acct = r.get("accounting") or {}
        if acct:
            cls = "bad" if acct.get("lost") else "ok"
            parts.append(
                f"<p class='{cls}'>accounting: " + escape(", ".join(f"{k}={v}" for k, v in acct.items())) + "</p>"
            )
        parts.append(_steps_table(r))
        figures = {k: v for k, v in r["figures"].items() if k != "steps"}
        parts.append("<h3>figures</h3>" + _table(figures) + "<h3>parameters</h3>" + _table(r["params"]))
        parts.append("<div class='charts'>" + "".join(_charts(r)) + "</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
