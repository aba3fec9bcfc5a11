// evenflow's dashboard: polls the admin API every 2 s and updates the page in place (rows are
// kept by pool and backend, so a button is never replaced under the pointer). No build step,
// no library. The token, when the admin API has one, is typed into the page, kept for this tab
// only (sessionStorage) and sent as a bearer token with every API call.
"use strict";

const REFRESH_MS = 2000;
const FLIPS_SHOWN = 20;
const SHARE_SKEW = 0.1; // share off its expected value by more than this is highlighted
const SHARE_MIN_REQUESTS = 20; // ... once the window holds enough requests to judge
const TOKEN_KEY = "evenflow-admin-token";
const NOTICE_MS = 10000; // how long the outcome of a button stays on screen

let sampleS = 5; // the stats' sample period, as /api/v1/stats says

const $ = (selector) => document.querySelector(selector);
const tokenInput = $("#token");
const statusLine = $("#status");
const notice = $("#notice");

// -- the API -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const token = tokenInput.value.trim();
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(path, { ...options, headers, cache: "no-store" });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, message);
  }
  return response.json();
}

const backendPath = (pool, address) =>
  `/api/v1/pools/${encodeURIComponent(pool)}/backends/${encodeURIComponent(address)}`;

// -- small DOM helpers -------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function setText(node, text) {
  const value = String(text ?? "");
  if (node.textContent !== value) node.textContent = value;
}

const fmt = (value, digits = 1) =>
  value === null || value === undefined ? "–" : Number(value).toFixed(digits);
const pct = (value) => `${Math.round((value || 0) * 100)}%`;
const clock = (at) => (at ? new Date(at * 1000).toLocaleTimeString() : "–");

// Keeps one child per key in `parent`, in the order of `items`: builds missing ones, removes
// those whose key is gone, and calls update(child, item) on each.
function sync(parent, items, keyOf, build, update) {
  const existing = new Map([...parent.children].map((child) => [child.dataset.key, child]));
  items.forEach((item, index) => {
    const key = keyOf(item);
    let child = existing.get(key);
    if (child) existing.delete(key);
    else {
      child = build(item);
      child.dataset.key = key;
    }
    if (parent.children[index] !== child) {
      parent.insertBefore(child, parent.children[index] || null);
    }
    update(child, item);
  });
  existing.forEach((child) => child.remove());
}

// -- pools and backends ------------------------------------------------------------------------

const COLUMNS = ["backend", "state", "weight", "in flight", "conns", "requests", "req/s",
  "p50 ms", "p99 ms", "share vs expected", "req/s (5 min)", "last flip", ""];

function buildPool(pool) {
  const title = el("h2", {},
    el("span", { class: "name" }, `pool ${pool.name}`),
    el("span", { class: "muted algorithm" }),
    el("span", { class: "muted healthy" }),
    el("span", { class: "badge panic", hidden: "" }, "panic"));
  const table = el("table", {},
    el("thead", {}, el("tr", {}, ...COLUMNS.map((h) => el("th", {}, h)))),
    el("tbody"));
  const hot = el("div", { class: "hot" },
    el("div", { class: "keys" }), el("div", { class: "clients" }));
  return el("section", { class: "card pool", "data-pool": pool.name }, title, table, hot);
}

function updatePool(card, { pool, stats, hot }) {
  setText(card.querySelector(".algorithm"), pool.algorithm);
  setText(card.querySelector(".healthy"), `${pool.healthy} of ${pool.backends.length} healthy`);
  const panic = card.querySelector(".panic");
  panic.hidden = !pool.panic;
  panic.title = "too few healthy backends: balancing over all of them";
  const shares = new Map((hot?.backends || []).map((b) => [b.address, b]));
  const rows = pool.backends.map((backend) => ({
    pool: pool.name,
    backend,
    recent: stats[`${pool.name}/${backend.address}`] || {},
    share: shares.get(backend.address),
    windowRequests: hot?.requests || 0,
  }));
  sync(card.querySelector("tbody"), rows, (r) => r.backend.address, buildBackend, updateBackend);
  updateHot(card.querySelector(".hot"), hot);
}

// the heaviest hash keys (secret ones arrive hashed) and client addresses, NAT suspects marked
function updateHot(box, hot) {
  const keys = (hot?.keys || []).slice(0, 5);
  const clients = (hot?.clients || []).slice(0, 5);
  setText(box.querySelector(".keys"), keys.length
    ? `hot keys: ${keys.map((k) => `${k.key} (${pct(k.share)})`).join(", ")}` : "");
  box.querySelector(".clients").replaceChildren(...(clients.length ? ["clients: "] : []),
    ...clients.map((c) => el("span", { class: c.nat_suspect ? "nat" : "" },
      `${c.address} (${pct(c.share)})${c.nat_suspect ? " NAT?" : ""} `)));
}

function buildBackend({ pool, backend }) {
  const cell = (field, cls = "") => el("td", { "data-field": field, class: cls });
  const button = (action) => el("button", {
    type: "button", "data-action": action, onclick: () => act(pool, backend.address, action),
  }, action);
  return el("tr", { "data-backend": backend.address },
    el("td", { class: "address" }, backend.address),
    el("td", { "data-field": "state" },
      el("span", { class: "badge" }),
      el("span", { class: "badge health", hidden: "" }, "unhealthy")),
    cell("weight", "num"), cell("in_flight", "num"), cell("active_connections", "num"),
    cell("requests", "num"), cell("rps", "num"), cell("p50", "num"), cell("p99", "num"),
    el("td", { "data-field": "share" }, el("div", { class: "share-cell" },
      el("div", { class: "share" },
        el("div", { class: "actual" }), el("div", { class: "expected" })),
      el("span", { class: "share-text" }))),
    el("td", {}, el("canvas", { class: "spark", width: "100", height: "24" })),
    cell("last_flip", "reason"),
    el("td", { class: "actions" }, button("drain"), button("disable"), button("enable")));
}

function updateBackend(row, { backend: b, recent, share, windowRequests }) {
  const field = (name) => row.querySelector(`[data-field="${name}"]`);
  const badge = field("state").firstChild;
  badge.className = `badge state-${b.state}`;
  badge.dataset.state = b.state;
  row.dataset.state = b.state;
  const draining = b.state === "draining" && b.drain_deadline_in_s !== null;
  setText(badge, draining ? `draining ${Math.ceil(b.drain_deadline_in_s)}s` : b.state);
  // draining or disabled hides the health: say it when the backend is down as well
  field("state").lastChild.hidden = !(b.health === "unhealthy" && b.state !== "unhealthy");
  const weight = b.effective_weight === b.weight
    ? b.weight : `${b.weight} (${fmt(b.effective_weight, 2)})`;
  setText(field("weight"), weight);
  setText(field("in_flight"), b.in_flight);
  setText(field("active_connections"), b.active_connections);
  setText(field("requests"), b.requests_total);
  setText(field("rps"), fmt(recent.rps));
  setText(field("p50"), fmt(recent.p50_ms, 2));
  setText(field("p99"), fmt(recent.p99_ms, 2));
  updateShare(field("share"), share, windowRequests);
  drawSparkline(row.querySelector("canvas"), recent.history_rps || []);
  const flip = b.last_flip || {};
  setText(field("last_flip"), flip.reason ? `${clock(flip.at)} ${flip.reason}` : "");
  for (const button of row.querySelectorAll("button")) {
    const action = button.dataset.action;
    button.disabled = (action === "drain" && b.admin === "draining")
      || (action === "disable" && b.admin === "disabled")
      || (action === "enable" && b.admin === "enabled");
  }
}

function updateShare(cell, share, windowRequests) {
  const actual = share?.share || 0;
  const expected = share?.expected_share || 0;
  cell.querySelector(".actual").style.width = `${Math.min(100, actual * 100)}%`;
  cell.querySelector(".expected").style.left = `${Math.min(100, expected * 100)}%`;
  const skewed = Boolean(share) && windowRequests >= SHARE_MIN_REQUESTS
    && Math.abs(actual - expected) > SHARE_SKEW;
  cell.classList.toggle("skewed", skewed);
  cell.title = share
    ? `over the last minute: ${pct(actual)} of the pool's requests, expected ${pct(expected)}`
    : "";
  setText(cell.querySelector(".share-text"), share ? `${pct(actual)} / ${pct(expected)}` : "–");
}

function drawSparkline(canvas, points) {
  const key = points.join(",");
  if (canvas.dataset.points === key) return;
  canvas.dataset.points = key;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (points.length < 2) return;
  const max = Math.max(1, ...points);
  ctx.strokeStyle = getComputedStyle(canvas).color;
  ctx.lineWidth = 1.5;
  ctx.beginPath();
  points.forEach((value, i) => {
    const x = (i / (points.length - 1)) * (canvas.width - 2) + 1;
    const y = canvas.height - 2 - (value / max) * (canvas.height - 4);
    if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
  });
  ctx.stroke();
  canvas.title = `req/s every ${sampleS} s; peak ${fmt(Math.max(...points))}`;
}

// -- flips -------------------------------------------------------------------------------------

function updateFlips(flips) {
  const shown = flips.slice(-FLIPS_SHOWN).reverse();
  const tbody = $("#flips tbody");
  sync(tbody, shown, (f) => `${f.at}|${f.pool}|${f.backend}|${f.state}`,
    (f) => el("tr", {},
      el("td", {}, clock(f.at)), el("td", {}, f.pool), el("td", {}, f.backend),
      el("td", {}, el("span", { class: `badge state-${f.state}` }, f.state)),
      el("td", { class: "reason" }, f.reason)),
    () => {});
  $("#no-flips").hidden = shown.length > 0;
}

// -- actions and refresh -----------------------------------------------------------------------

let noticeTimer = null;

function say(message, isError = false) {
  notice.textContent = message;
  notice.classList.toggle("error", isError);
  notice.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { notice.hidden = true; }, NOTICE_MS);
}

async function act(pool, address, action) {
  try {
    await api(`${backendPath(pool, address)}/${action}`,
      { method: "POST", headers: { "Content-Type": "application/json" }, body: "{}" });
    say(`${action}: ${address} in pool ${pool}`);
  } catch (error) {
    say(`${action} ${address}: ${error.message}`, true);
    if (error.status === 401) askForToken();
  }
  await refreshNow();
}

function askForToken() {
  document.body.classList.add("needs-token");
  if (document.activeElement !== tokenInput) tokenInput.focus();
}

let refreshing = null;

async function refresh() {
  if (refreshing) return refreshing; // one refresh at a time; a click joins the one under way
  refreshing = (async () => {
    try {
      const [pools, stats, flips] = await Promise.all(
        [api("/api/v1/pools"), api("/api/v1/stats"), api("/api/v1/flips")]);
      const hot = await Promise.all(pools.pools.map((p) =>
        api(`/api/v1/pools/${encodeURIComponent(p.name)}/hotspots`).catch(() => null)));
      sampleS = stats.sample_s || sampleS;
      const backends = stats.backends || {};
      const items = pools.pools.map((pool, i) => ({ pool, stats: backends, hot: hot[i] }));
      sync($("#pools"), items, (item) => item.pool.name, (item) => buildPool(item.pool),
        updatePool);
      updateFlips(flips.flips || []);
      document.body.classList.remove("needs-token", "stale");
      setText(statusLine, `live · updated ${new Date().toLocaleTimeString()}`);
    } catch (error) {
      document.body.classList.add("stale");
      if (error.status === 401) {
        askForToken();
        setText(statusLine, tokenInput.value.trim()
          ? "the admin token was refused: type the right one"
          : "this admin API needs a token: type it in the box");
      } else {
        setText(statusLine, `cannot refresh: ${error.message}`);
      }
    } finally {
      refreshing = null;
    }
  })();
  return refreshing;
}

// A refresh with data from after now (one under way may have begun before an action or a new
// token: it is waited for, then a new one made).
async function refreshNow() {
  if (refreshing) await refreshing;
  return refresh();
}

tokenInput.value = sessionStorage.getItem(TOKEN_KEY) || "";
$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim());
  refreshNow();
});
tokenInput.addEventListener("change",
  () => sessionStorage.setItem(TOKEN_KEY, tokenInput.value.trim()));

refresh();
setInterval(refresh, REFRESH_MS);
