// Small line charts on <canvas>: a rolling window of points per series.
// No library: axes, grid, lines and a legend drawn by hand.
"use strict";

const PALETTE = ["#2d6cdf", "#2e7d32", "#ef6c00", "#c62828", "#6a1b9a", "#00838f", "#5d4037", "#9e9d24"];

class LineChart {
  constructor(canvas, legend, { maxPoints = 90, unit = "" } = {}) {
    this.canvas = canvas;
    this.legend = legend;
    this.maxPoints = maxPoints;
    this.unit = unit;
    this.series = new Map(); // name -> {color, points: [[t, v], ...]}
  }

  push(t, values) {
    for (const [name, v] of Object.entries(values)) {
      if (!this.series.has(name)) {
        this.series.set(name, { color: PALETTE[this.series.size % PALETTE.length], points: [] });
      }
      const s = this.series.get(name);
      s.points.push([t, v]);
      if (s.points.length > this.maxPoints) s.points.shift();
    }
    this.draw();
  }

  // Points drawn so far (the dashboard tests read them back).
  snapshot() {
    const out = {};
    for (const [name, s] of this.series) out[name] = s.points.map((p) => p[1]);
    return out;
  }

  draw() {
    const ratio = window.devicePixelRatio || 1;
    const w = this.canvas.clientWidth || 400;
    const h = this.canvas.clientHeight || 220;
    this.canvas.width = w * ratio;
    this.canvas.height = h * ratio;
    const g = this.canvas.getContext("2d");
    g.scale(ratio, ratio);
    g.clearRect(0, 0, w, h);
    const pad = { l: 48, r: 10, t: 10, b: 22 };
    let tMin = Infinity, tMax = -Infinity, vMax = 0;
    for (const s of this.series.values()) {
      for (const [t, v] of s.points) {
        tMin = Math.min(tMin, t); tMax = Math.max(tMax, t); vMax = Math.max(vMax, v);
      }
    }
    if (!isFinite(tMin)) { tMin = 0; tMax = 1; }
    if (tMax === tMin) tMax = tMin + 1;
    vMax = niceCeil(vMax || 1);
    const x = (t) => pad.l + ((t - tMin) / (tMax - tMin)) * (w - pad.l - pad.r);
    const y = (v) => h - pad.b - (v / vMax) * (h - pad.t - pad.b);
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = "#6b7385";
    g.strokeStyle = "#e6e9ef";
    g.lineWidth = 1;
    for (let i = 0; i <= 4; i++) {
      const v = (vMax * i) / 4;
      g.beginPath(); g.moveTo(pad.l, y(v)); g.lineTo(w - pad.r, y(v)); g.stroke();
      g.textAlign = "right";
      g.fillText(fmtNum(v) + this.unit, pad.l - 6, y(v) + 4);
    }
    g.textAlign = "left";
    g.fillText(new Date(tMin).toLocaleTimeString(), pad.l, h - 6);
    g.textAlign = "right";
    g.fillText(new Date(tMax).toLocaleTimeString(), w - pad.r, h - 6);
    for (const s of this.series.values()) {
      g.strokeStyle = s.color;
      g.lineWidth = 2;
      g.beginPath();
      s.points.forEach(([t, v], i) => (i ? g.lineTo(x(t), y(v)) : g.moveTo(x(t), y(v))));
      g.stroke();
    }
    this.drawLegend();
  }

  drawLegend() {
    if (!this.legend) return;
    this.legend.textContent = "";
    for (const [name, s] of this.series) {
      const item = document.createElement("span");
      const swatch = document.createElement("i");
      swatch.style.background = s.color;
      item.append(swatch, `${name}: ${fmtNum(s.points.length ? s.points[s.points.length - 1][1] : 0)}${this.unit}`);
      this.legend.append(item);
    }
  }
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtNum(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e4) return (v / 1e3).toFixed(1) + "k";
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

window.LineChart = LineChart;
window.fmtNum = fmtNum;
