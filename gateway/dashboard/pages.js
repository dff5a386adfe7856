// One function per dashboard page: (root element, optional argument) -> Promise.
"use strict";

const POLL_MS = 2000;

function stat(id, label, value) {
  return el("div", { class: "stat" }, el("div", { class: "label" }, label),
    el("div", { class: "value", id }, value));
}

function ms(v) { return v === null || v === undefined ? "–" : fmtNum(v) + " ms"; }

async function overview(root) {
  const cards = el("div", { class: "cards", id: "overview-cards" });
  const rate = el("canvas", { id: "chart-rate" });
  const conns = el("canvas", { id: "chart-connections" });
  const rateLegend = el("div", { class: "legend" });
  const connLegend = el("div", { class: "legend" });
  const apps = el("div", { id: "overview-apps" });
  const bridge = el("div", { id: "overview-bridge" });
  // Counts cover the statistics window (admin_stats_window_s); pending is the backlog now.
  const appsTitle = el("h2", { id: "apps-title" }, "Per app");
  const bridgeTitle = el("h2", {}, "APNs bridge results");
  root.append(el("h1", {}, "Overview"), cards,
    el("div", { class: "charts" },
      el("div", { class: "card" }, el("h2", {}, "Notifications per second"), rate, rateLegend),
      el("div", { class: "card" }, el("h2", {}, "Connections per shard"), conns, connLegend)),
    appsTitle, apps, bridgeTitle, bridge);
  const rateChart = new LineChart(rate, rateLegend, { unit: "/s" });
  const connChart = new LineChart(conns, connLegend);
  window.charts = { rate: rateChart, connections: connChart };
  let last = null;
  poll(async () => {
    const s = await api("/stats");
    const t = s.totals;
    const span = "last " + Math.round(s.window_s / 60) + " min";
    appsTitle.textContent = "Per app (" + span + "; pending: now)";
    bridgeTitle.textContent = "APNs bridge results (" + span + ")";
    cards.replaceChildren(
      stat("stat-accepted", "accepted", fmtNum(t.accepted)),
      stat("stat-delivered", "delivered", fmtNum(t.delivered)),
      stat("stat-pending", "pending", fmtNum(t.pending)),
      stat("stat-expired", "expired", fmtNum(t.expired)),
      stat("stat-dropped", "dropped", fmtNum(t.dropped)),
      stat("stat-connections", "connections", fmtNum(s.connections.total)),
      stat("stat-p50", "ack p50", ms(s.ack_latency_ms.p50)),
      stat("stat-p99", "ack p99", ms(s.ack_latency_ms.p99)));
    if (last) {
      const dt = Math.max(0.001, (s.at_ms - last.at_ms) / 1000);
      rateChart.push(s.at_ms, {
        accepted: Math.max(0, (t.accepted - last.totals.accepted) / dt),
        delivered: Math.max(0, (t.delivered - last.totals.delivered) / dt),
      });
    }
    connChart.push(s.at_ms, Object.fromEntries(
      Object.entries(s.connections.per_shard).map(([k, v]) => ["shard " + k, v])));
    last = s;
    apps.replaceChildren(table([
      ["app", (a) => a.bundle_id], ["accepted", (a) => a.accepted, "num"], ["delivered", (a) => a.delivered, "num"],
      ["pending", (a) => a.pending, "num"], ["expired", (a) => a.expired, "num"], ["dropped", (a) => a.dropped, "num"],
    ], s.apps, { id: "apps-stats" }));
    bridge.replaceChildren(s.bridge.length
      ? table([["status", (b) => badge(b.status)], ["reason", (b) => b.reason || "–"], ["count", (b) => b.count, "num"]],
        s.bridge, { id: "bridge-stats" })
      : el("p", { class: "muted" }, "No notifications relayed to Apple yet."));
    setStatus("updated " + new Date(s.at_ms).toLocaleTimeString());
  }, POLL_MS);
}

async function devices(root, deviceId) {
  const input = el("input", { id: "device-query", placeholder: "device id, user id or token prefix", size: 40 });
  const results = el("div", { id: "device-results" });
  const detail = el("div", { id: "device-detail" });
  const search = async () => {
    const r = await api("/devices?q=" + encodeURIComponent(input.value.trim()));
    results.replaceChildren(
      table([["device", (d) => el("a", { href: "#devices/" + d.device_id, class: "mono" }, d.device_id)],
        ["app id", (d) => d.app_id, "num"], ["user", (d) => d.user_id || "–"], ["created", (d) => when(d.created_at_ms)]],
      r.devices, { id: "device-table" }),
      r.apns_tokens.length ? el("h2", {}, "iPhone tokens (relayed to Apple)") : "",
      r.apns_tokens.length ? table([["token", (t) => el("code", {}, t.token)], ["topic", (t) => t.topic],
        ["active", (t) => badge(t.active ? "yes" : "no")]], r.apns_tokens) : "");
  };
  root.append(el("h1", {}, "Devices"),
    el("form", { class: "inline", id: "device-search", onsubmit: (e) => { e.preventDefault(); search(); } },
      input, el("button", { type: "submit" }, "Search")), detail, results);
  if (deviceId) {
    const d = await api("/devices/" + encodeURIComponent(deviceId));
    const p = d.presence;
    detail.append(el("div", { class: "card" },
      el("h2", {}, "Device ", el("code", { id: "detail-device-id" }, d.device.device_id)),
      el("p", {}, "App ", el("b", {}, d.bundle_id || String(d.device.app_id)), " · user ", d.device.user_id || "–",
        " · presence: ", el("span", { id: "detail-presence" },
          p.connected === null ? "unknown (" + p.error + ")" : p.connected ? "connected to shard " + p.shard : "offline")),
      el("h2", {}, "Tokens"),
      table([["token", (t) => el("code", {}, t.token)], ["topic", (t) => t.topic], ["env", (t) => t.environment],
        ["active", (t) => badge(t.active ? "yes" : "no")]], d.tokens, { id: "detail-tokens" }),
      el("h2", {}, "Backlog: ", el("span", { id: "detail-pending" }, String(d.backlog.pending)), " pending"),
      table([["apns-id", (n) => el("a", { href: "#notifications/" + n.apns_id, class: "mono" }, n.apns_id)],
        ["priority", (n) => n.priority, "num"], ["type", (n) => n.push_type], ["accepted", (n) => when(n.accepted_at_ms)]],
      d.backlog.next, { id: "detail-backlog" })));
  }
  await search();
}

async function notifications(root, apnsId) {
  const input = el("input", { id: "apns-id-query", placeholder: "apns-id", size: 40, value: apnsId || "" });
  const detail = el("div", { id: "notification-detail" });
  const list = el("div", { id: "notification-list" });
  root.append(el("h1", {}, "Notifications"),
    el("form", { class: "inline", onsubmit: (e) => { e.preventDefault(); location.hash = "#notifications/" + input.value.trim(); } },
      input, el("button", { type: "submit" }, "Look up")), detail, el("h2", {}, "Most recent"), list);
  if (apnsId) {
    try {
      const n = await api("/notifications/" + encodeURIComponent(apnsId));
      const one = n.matches ? n.matches[0] : n;
      detail.append(el("div", { class: "card" },
        el("h2", {}, "apns-id ", el("code", {}, one.apns_id), " ", el("span", { id: "detail-status" }, badge(one.status))),
        el("p", {}, "app ", one.bundle_id, " · token ", el("code", {}, one.token), " · priority ", String(one.priority),
          " · ", one.push_type, one.reason ? " · reason " + one.reason : ""),
        el("ol", { class: "timeline", id: "detail-timeline" },
          one.timeline.map((t) => el("li", { "data-event": t.event }, el("b", {}, t.event), " ", when(t.at_ms)))),
        el("h2", {}, "Payload"), el("pre", {}, one.payload)));
    } catch (err) {
      detail.append(el("p", { class: "error", id: "detail-error" }, err.message));
    }
  }
  const r = await api("/notifications?limit=50");
  list.append(table([
    ["apns-id", (n) => el("a", { href: "#notifications/" + n.apns_id, class: "mono" }, n.apns_id)],
    ["app id", (n) => n.app_id, "num"], ["status", (n) => badge(n.status)], ["kind", (n) => n.kind],
    ["accepted", (n) => when(n.accepted_at_ms)],
  ], r.notifications, { id: "notification-table" }));
}

async function shards(root) {
  const box = el("div", { id: "shard-list" });
  root.append(el("h1", {}, "Shards"), box);
  poll(async () => {
    const r = await api("/shards");
    box.replaceChildren(r.shards.length ? table([
      ["shard", (s) => s.shard], ["status", (s) => badge(s.status)], ["connections", (s) => s.connections, "num"],
      ["host", (s) => s.host + ":" + s.ws_port], ["pid", (s) => s.pid, "num"], ["last seen", (s) => s.age_s + " s ago"],
    ], r.shards, { id: "shard-table" }) : el("p", { class: "muted" }, "No shard has reported yet."));
  }, POLL_MS);
}

async function apps(root) {
  const [teams, appsResp] = await Promise.all([api("/teams"), api("/apps")]);
  const msg = el("p", { class: "error", id: "apps-error" });
  const teamId = el("input", { id: "new-team-id", placeholder: "team id (10 chars)", size: 14 });
  const bundle = el("input", { id: "new-bundle-id", placeholder: "bundle id", size: 28 });
  const teamSel = el("select", { id: "new-app-team" }, teams.teams.map((t) => el("option", { value: t.team_id }, t.team_id)));
  const act = (fn) => async (e) => { e.preventDefault(); try { await fn(); route(); } catch (err) { msg.textContent = err.message; } };
  root.append(el("h1", {}, "Apps"), msg,
    table([["app id", (a) => a.app_id, "num"], ["bundle id", (a) => a.bundle_id], ["team", (a) => a.team_id],
      ["name", (a) => a.name || "–"]], appsResp.apps, { id: "app-table" }),
    el("h2", {}, "New app"),
    el("form", { class: "inline", id: "create-app", onsubmit: act(() => api("/apps", { method: "POST", body: { team_id: teamSel.value, bundle_id: bundle.value } })) },
      teamSel, bundle, el("button", { type: "submit" }, "Create app")),
    el("h2", {}, "Teams"),
    table([["team id", (t) => t.team_id], ["name", (t) => t.name], ["created", (t) => when(t.created_at_ms)]],
      teams.teams, { id: "team-table" }),
    el("form", { class: "inline", id: "create-team", onsubmit: act(() => api("/teams", { method: "POST", body: { team_id: teamId.value } })) },
      teamId, el("button", { type: "submit" }, "Create team")));
}

async function keys(root) {
  const [keysResp, appsResp] = await Promise.all([api("/keys"), api("/apps")]);
  const secret = el("div", { id: "new-secret" });
  root.append(el("h1", {}, "Keys"), el("h2", {}, "Provider signing keys (ES256)"),
    table([["key id", (k) => el("code", {}, k.key_id)], ["team", (k) => k.team_id],
      ["state", (k) => badge(k.revoked ? "revoked" : "active")]], keysResp.keys, { id: "provider-key-table" }),
    el("h2", {}, "REST API keys"), secret);
  const rows = [];
  for (const a of appsResp.apps) {
    const r = await api("/apps/" + a.app_id + "/apikeys");
    for (const k of r.api_keys) rows.push({ bundle_id: a.bundle_id, ...k });
  }
  root.append(table([["app", (k) => k.bundle_id], ["key", (k) => el("code", {}, k.key_prefix + "…")],
    ["created", (k) => when(k.created_at_ms)]], rows, { id: "api-key-table" }));
  const sel = el("select", { id: "apikey-app" }, appsResp.apps.map((a) => el("option", { value: a.app_id }, a.bundle_id)));
  root.append(el("form", { class: "inline", id: "create-apikey", onsubmit: async (e) => {
    e.preventDefault();
    const k = await api("/apps/" + sel.value + "/apikeys", { method: "POST" });
    secret.replaceChildren(el("p", { class: "secret" }, "New API key (shown once): ", el("code", { id: "new-api-key" }, k.api_key)));
  } }, sel, el("button", { type: "submit" }, "Create API key")));
}

window.PAGES = { overview, devices, notifications, shards, apps, keys };
