// evenflow's dashboard: polls the admin API every 2 s and redraws; no build step, no library.
"use strict";

const REFRESH_MS = 2000;
const tokenInput = document.getElementById("token");
tokenInput.value = localStorage.getItem("evenflow-token") || "";
tokenInput.addEventListener("change", () => localStorage.setItem("evenflow-token", tokenInput.value));
document.getElementById("token-form").addEventListener("submit", (e) => e.preventDefault());

function headers() {
  const token = tokenInput.value.trim();
  return token ? { Authorization: "Bearer " + token } : {};
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
  if (response.status === 404) return null;
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response.json();
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

const fmt = (value, digits = 1) => (value === null || value === undefined ? "–" : Number(value).toFixed(digits));

function sparkline(points) {
  const canvas = el("canvas", { class: "spark", width: "120", height: "24" });
  const ctx = canvas.getContext("2d");
  const max = Math.max(1, ...points);
  ctx.strokeStyle = "#3b6fd8";
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  points.forEach((value, i) => {
    const x = points.length < 2 ? 0 : (i / (points.length - 1)) * 118 + 1;
    const y = 22 - (value / max) * 20;
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  return canvas;
}

function shareBar(actual, expected) {
  const bar = el("div", { class: "share", title: `actual ${fmt(actual * 100)}%, expected ${fmt(expected * 100)}%` });
  bar.append(el("div", { class: "actual", style: `width:${Math.min(100, actual * 100)}%` }));
  bar.append(el("div", { class: "expected", style: `left:${Math.min(100, expected * 100)}%` }));
  return bar;
}

async function act(pool, address, action) {
  try {
    await api(`/api/v1/pools/${encodeURIComponent(pool)}/backends/${encodeURIComponent(address)}/${action}`,
              { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    await refresh();
  } catch (error) {
    alert(`${action} ${address}: ${error.message}`);
  }
}

function poolCard(pool, stats, hot) {
  const shares = new Map((hot?.backends || []).map((b) => [b.address, b]));
  const title = el("h2", {}, `pool ${pool.name}`, el("span", { class: "muted" }, pool.algorithm));
  if (pool.panic) title.append(el("span", { class: "badge panic" }, "panic"));
  const rows = pool.backends.map((b) => {
    const s = stats[`${pool.name}/${b.address}`] || {};
    const share = shares.get(b.address);
    return el("tr", { "data-backend": b.address },
      el("td", {}, b.address),
      el("td", {}, el("span", { class: `badge state-${b.state}`, "data-state": b.state }, b.state)),
      el("td", { class: "num" }, `${b.weight} / ${fmt(b.effective_weight, 2)}`),
      el("td", { class: "num" }, b.in_flight),
      el("td", { class: "num" }, b.active_connections),
      el("td", { class: "num", "data-field": "requests" }, b.requests_total),
      el("td", { class: "num", "data-field": "rps" }, fmt(s.rps)),
      el("td", { class: "num" }, fmt(s.p50_ms, 2)),
      el("td", { class: "num" }, fmt(s.p99_ms, 2)),
      el("td", {}, share ? shareBar(share.share || 0, share.expected_share || 0) : "–"),
      el("td", {}, sparkline(s.history_rps || [])),
      el("td", { class: "reason" }, b.last_flip?.reason || ""),
      el("td", {},
        el("button", { onclick: () => act(pool.name, b.address, "drain") }, "drain"), " ",
        el("button", { onclick: () => act(pool.name, b.address, "disable") }, "disable"), " ",
        el("button", { onclick: () => act(pool.name, b.address, "enable") }, "enable")));
  });
  const table = el("table", {},
    el("thead", {}, el("tr", {}, ...["backend", "state", "weight / effective", "in flight", "conns",
      "requests", "req/s", "p50 ms", "p99 ms", "share vs expected", "req/s (5 min)", "last flip", ""]
      .map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
  const card = el("section", { class: "card", "data-pool": pool.name }, title, table);
  if (hot && (hot.keys?.length || hot.clients?.length)) {
    const keys = (hot.keys || []).slice(0, 5).map((k) => `${k.key} (${k.count})`).join(", ");
    const clients = (hot.clients || []).slice(0, 5).map((c) =>
      el("span", { class: c.nat_suspect ? "nat" : "" }, `${c.address} (${c.count})${c.nat_suspect ? " NAT?" : ""} `));
    card.append(el("div", { class: "hot" }, keys ? `hot keys: ${keys}` : "", el("br"), "clients: ", ...clients));
  }
  return card;
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const [pools, stats, flips] = await Promise.all([
      api("/api/v1/pools"), api("/api/v1/stats"), api("/api/v1/flips")]);
    const byBackend = (stats && stats.backends) || {};
    const hot = await Promise.all((pools?.pools || pools || []).map((p) =>
      api(`/api/v1/pools/${encodeURIComponent(p.name)}/hotspots`).catch(() => null)));
    const container = document.getElementById("pools");
    container.replaceChildren(...(pools?.pools || pools || []).map((p, i) => poolCard(p, byBackend, hot[i])));
    const tbody = document.querySelector("#flips tbody");
    tbody.replaceChildren(...((flips && flips.flips) || []).slice(-20).reverse().map((f) =>
      el("tr", {}, el("td", {}, new Date(f.at * 1000).toLocaleTimeString()), el("td", {}, f.pool),
         el("td", {}, f.backend), el("td", {}, el("span", { class: `badge state-${f.state}` }, f.state)),
         el("td", { class: "reason" }, f.reason))));
    status.textContent = "live · " + new Date().toLocaleTimeString();
  } catch (error) {
    status.textContent = "error: " + error.message;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
