// Dashboard shell: login with the admin token, hash routing, API calls.
// The token lives in sessionStorage (gone when the tab closes) and is sent
// as a Bearer header; the page never puts it in a URL.
"use strict";

const API = "/admin/api/v1";
const state = { token: sessionStorage.getItem("pushgw-admin-token") || "", timer: null, page: null };

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + state.token }, options.headers || {});
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(API + path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  if (resp.status === 401) { logout("Session expired: log in again."); throw new Error("unauthorized"); }
  const body = resp.status === 204 ? null : await resp.json();
  if (!resp.ok) throw new Error((body && (body.detail || body.error)) || resp.statusText);
  return body;
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) node.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return node;
}

function table(columns, rows, attrs) {
  // columns: [[header, row => cell, "num"?]]
  return el("table", attrs,
    el("thead", {}, el("tr", {}, columns.map(([h, , cls]) => el("th", { class: cls }, h)))),
    el("tbody", {}, rows.map((r) => el("tr", {}, columns.map(([, f, cls]) => el("td", { class: cls }, f(r)))))));
}

function badge(text) { return el("span", { class: "badge " + String(text).replace(/\s+/g, "-") }, String(text)); }
function when(ms) { return ms ? new Date(ms).toLocaleString() : "–"; }

function setStatus(text) { document.getElementById("status-line").textContent = text; }

async function login(token) {
  state.token = token;
  try {
    await api("/stats");
  } catch (err) {
    state.token = "";
    document.getElementById("login-error").textContent = "Login failed: " + err.message;
    return;
  }
  sessionStorage.setItem("pushgw-admin-token", token);
  document.getElementById("login-error").textContent = "";
  document.getElementById("login").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("page").hidden = false;
  if (!location.hash) location.hash = "#overview";
  route();
}

function logout(message) {
  state.token = "";
  sessionStorage.removeItem("pushgw-admin-token");
  stopPolling();
  document.getElementById("login").hidden = false;
  document.getElementById("nav").hidden = true;
  document.getElementById("page").hidden = true;
  document.getElementById("login-error").textContent = message || "";
}

function stopPolling() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
}

// Run fn now and then every `ms` while the page stays open.
function poll(fn, ms) {
  stopPolling();
  const tick = () => fn().catch((err) => setStatus("update failed: " + err.message));
  tick();
  state.timer = setInterval(tick, ms);
}

function route() {
  if (!state.token) return;
  const [name, arg] = decodeURIComponent(location.hash.slice(1) || "overview").split("/");
  const page = window.PAGES[name] ? name : "overview";
  stopPolling();
  state.page = page;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  const root = document.getElementById("page");
  root.textContent = "";
  root.dataset.page = page;
  setStatus("");
  window.PAGES[page](root, arg).catch((err) => setStatus("error: " + err.message));
}

document.getElementById("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  login(document.getElementById("token").value);
});
document.getElementById("logout").addEventListener("click", () => logout(""));
window.addEventListener("hashchange", route);
if (state.token) login(state.token);

Object.assign(window, { api, el, table, badge, when, poll, setStatus });
