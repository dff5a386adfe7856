"""Line charts as inline SVG: the HTML report opens anywhere, with no scripts and no CDN."""

from __future__ import annotations

from html import escape

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 260, 64, 16, 28, 40


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _fmt(v: float) -> str:
    if abs(v) >= 10_000:
        return f"{v / 1000:.0f}k"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def line_chart(title: str, xlabel: str, ylabel: str, series: list[tuple[str, list[tuple[float, float]]]]) -> str:
    points = [p for _name, pts in series for p in pts]
    if not points:
        return f'<p class="empty">{escape(title)}: no data</p>'
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y1 = max(p[1] for p in points) * 1.05 or 1.0
    x1 = x1 if x1 > x0 else x0 + 1
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def sx(x: float) -> float:
        return LEFT + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return TOP + ph - y / y1 * ph

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" role="img">',
           f'<title>{escape(title)}</title>',
           f'<text x="{W / 2}" y="16" text-anchor="middle" font-size="13" font-weight="bold">{escape(title)}</text>',
           f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']  # fmt: skip
    for y in _ticks(0, y1):
        out.append(f'<line x1="{LEFT}" x2="{LEFT + pw}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{LEFT - 4}" y="{sy(y) + 4:.1f}" text-anchor="end" font-size="10">{_fmt(y)}</text>')
    for x in _ticks(x0, x1):
        out.append(f'<text x="{sx(x):.1f}" y="{TOP + ph + 14}" text-anchor="middle" font-size="10">{_fmt(x)}</text>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 6}" text-anchor="middle" font-size="11">{escape(xlabel)}</text>')
    out.append(f'<text x="12" y="{TOP + ph / 2}" text-anchor="middle" font-size="11" '
               f'transform="rotate(-90 12 {TOP + ph / 2})">{escape(ylabel)}</text>')  # fmt: skip
    for i, (name, pts) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        if pts:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in sorted(pts))
            out.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6" points="{path}"/>')
        lx = LEFT + 8 + i * 150
        out.append(f'<rect x="{lx}" y="{TOP + 6}" width="10" height="10" fill="{color}"/>')
        out.append(f'<text x="{lx + 14}" y="{TOP + 15}" font-size="11">{escape(name)}</text>')
    out.append("</svg>")
    return "\n".join(out)
