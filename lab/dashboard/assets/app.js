// applayer lab dashboard: plain JavaScript, no build step.
"use strict";

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k);
  return e;
};
const SVG = "http://www.w3.org/2000/svg";
const svgEl = (tag, attrs) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
};

let topo = null;            // /api/topology
const hostOrder = new Map(); // host name -> index in the topology
let lastMetrics = {}, lastMetricsAt = 0;

// ---- sections -------------------------------------------------------------
const sections = ["topology", "sequence", "runs", "views"];
function show() {
  const name = (location.hash || "#topology").slice(1).split("?")[0];
  const cur = sections.includes(name) ? name : "topology";
  for (const s of sections) {
    $("#" + s).hidden = s !== cur;
    const a = $("#nav-" + s);
    if (s === cur) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  if (cur === "runs") loadRuns();
  if (cur === "views") loadViews();
}
window.addEventListener("hashchange", show);

// ---- topology -------------------------------------------------------------
async function loadTopology() {
  try {
    const r = await fetch("/api/topology", {cache: "no-store"});
    const t = await r.json();
    const now = performance.now();
    const rates = {};
    if (topo && lastMetricsAt) {
      const dt = (now - lastMetricsAt) / 1000;
      for (const h of t.hosts) for (const [k, v] of Object.entries(h.metrics || {})) {
        const before = (lastMetrics[h.name] || {})[k];
        if (before !== undefined && dt > 0) (rates[h.name] ||= {})[k] = (v - before) / dt;
      }
    }
    lastMetrics = Object.fromEntries(t.hosts.map((h) => [h.name, h.metrics || {}]));
    lastMetricsAt = now;
    const first = !topo;
    topo = t;
    t.hosts.forEach((h, i) => hostOrder.set(h.name, i));
    renderTopology(t, rates);
    if (first) fillHostList(t);
  } catch (e) {
    $("#status").textContent = "lab unreachable: " + e;
  }
}

function metricLine(h, rates) {
  const m = h.metrics || {};
  const parts = [];
  const r = rates[h.name] || {};
  const names = Object.keys(m).sort();
  let hits = 0, misses = 0;
  for (const k of names) {
    if (k.endsWith("hits_total")) hits += m[k];
    if (k.endsWith("misses_total")) misses += m[k];
  }
  for (const k of names.slice(0, 3)) {
    const short = k.replace(/^applayer_/, "").replace(/_total$/, "");
    parts.push(short + " " + m[k] + (r[k] !== undefined ? " (" + r[k].toFixed(1) + "/s)" : ""));
  }
  if (hits + misses > 0) parts.push("hit ratio " + (100 * hits / (hits + misses)).toFixed(0) + "%");
  return parts.join(" · ");
}

function renderTopology(t, rates) {
  $("#topo-summary").textContent = t.hosts.length + " hosts in " + t.block +
    (t.port_offset ? ", every port offset by " + t.port_offset : "");
  const byName = new Map(t.hosts.map((h) => [h.name, h]));
  const wrap = $("#groups");
  wrap.replaceChildren();
  for (const g of t.groups) {
    const box = el("div", {class: "group", "data-group": g.name}, el("h3", {text: g.title || g.name}));
    for (const name of g.hosts) {
      const h = byName.get(name);
      const ready = h.services.every((s) => s.ready);
      const b = el("button", {class: "host", type: "button", "data-host": h.name,
        "aria-label": h.name + ", " + h.addr + ", " + (ready ? "ready" : "not ready")},
        el("span", {class: "dot" + (ready ? " ok" : ""), "aria-hidden": "true"}),
        el("span", {class: "name", text: h.name}), " ",
        el("span", {class: "addr", text: h.addr}),
        el("div", {class: "svc", text: h.services.map((s) => s.kind).join(", ") + (h.zones && h.zones.length ? " — zones " + h.zones.join(" ") : "")}));
      if (h.link) b.append(el("div", {class: "link", text: "access link: " + h.link}));
      const ml = metricLine(h, rates);
      if (ml) b.append(el("div", {class: "metric", text: ml}));
      b.addEventListener("click", () => showHost(h));
      box.append(b);
    }
    wrap.append(box);
  }
  if (t.links && t.links.length) {
    wrap.append(el("div", {class: "group", "data-group": "links"}, el("h3", {text: "Links between hosts"}),
      el("ul", {}, ...t.links.map((l) => el("li", {class: "link", text: l.between.join(" ⇄ ") + ": " + l.link})))));
  }
}

function showHost(h) {
  const d = $("#host-detail");
  d.hidden = false;
  d.tabIndex = -1;
  const rows = h.services.map((s) => el("tr", {}, el("td", {text: s.kind}), el("td", {text: s.summary}),
    el("td", {text: (s.listen || []).join(", ")}), el("td", {text: s.ready ? "ready" : "not listening"})));
  const metrics = Object.entries(h.metrics || {}).map(([k, v]) => el("tr", {}, el("td", {text: k}), el("td", {text: String(v)})));
  const link = el("a", {href: "#sequence", text: "Messages of " + h.name});
  link.addEventListener("click", () => { $("#f-host").value = h.name; connect(); });
  d.replaceChildren(el("h3", {text: h.name + " (" + h.addr + ")"}),
    h.link ? el("p", {text: "Access link: " + h.link}) : "",
    el("table", {}, el("tr", {}, el("th", {text: "service"}), el("th", {text: "what"}), el("th", {text: "listening on"}), el("th", {text: "status"})), ...rows),
    metrics.length ? el("table", {}, el("tr", {}, el("th", {text: "counter"}), el("th", {text: "value"})), ...metrics) : "",
    el("p", {}, link));
  d.focus();
}

function fillHostList(t) {
  const dl = $("#host-names");
  dl.replaceChildren(...t.hosts.map((h) => el("option", {value: h.name})));
}

// ---- sequence diagram -----------------------------------------------------
const MAX_SHOWN = 400;
const LANE_W = 150, ROW_H = 24, TOP = 40, LEFT = 20;
let messages = [];           // shown events, oldest first
let lanes = [];              // lane names in display order
let paused = false, received = 0, dropped = 0;
let source = null;

function laneOf(host, addr) {
  if (host) return host;
  if (!addr) return "";
  return "outside " + addr.replace(/:\d+$/, "");
}

function ensureLane(name) {
  if (!name || lanes.includes(name)) return;
  lanes.push(name);
  const rank = (n) => hostOrder.has(n) ? hostOrder.get(n) : 1e6;
  lanes.sort((a, b) => rank(a) - rank(b));
}

function connect() {
  if (source) source.close();
  const q = new URLSearchParams();
  const p = $("#f-proto").value.trim(), h = $("#f-host").value.trim();
  if (p) q.set("proto", p);
  if (h) q.set("host", h);
  source = new EventSource("/api/events?" + q.toString());
  source.addEventListener("trace", (ev) => {
    received++;
    if (paused) return;
    const e = JSON.parse(ev.data);
    // A message is published by its sender and by its receiver (each
    // observing host): draw it once, noting both observers.
    const key = [e.from, e.to, e.proto, e.type || "", e.summary, e.bytes].join("|");
    const t = Date.parse(e.time);
    for (let i = messages.length - 1; i >= 0 && i >= messages.length - 50; i--) {
      const m = messages[i];
      if (m.key === key && Math.abs(m.t - t) < 1000 && !m.observers.includes(e.host)) {
        m.observers.push(e.host);
        return;
      }
    }
    e.key = key; e.t = t; e.observers = [e.host || ""];
    messages.push(e);
    if (messages.length > MAX_SHOWN) messages.splice(0, messages.length - MAX_SHOWN);
    scheduleDraw();
  });
  source.addEventListener("dropped", (ev) => {
    dropped = JSON.parse(ev.data).total;
    scheduleDraw();
  });
  source.onopen = () => { $("#status").textContent = "live"; };
  source.onerror = () => { $("#status").textContent = "reconnecting…"; };
}

// Redraws are batched: at most four a second whatever the event rate, so
// a flood of events cannot take the page's time.
let drawPending = false, lastDraw = 0;
const DRAW_EVERY = 250;
function scheduleDraw() {
  if (drawPending) return;
  drawPending = true;
  const wait = Math.max(0, lastDraw + DRAW_EVERY - performance.now());
  setTimeout(() => requestAnimationFrame(() => { drawPending = false; lastDraw = performance.now(); draw(); }), wait);
}

function kindClass(e) {
  const t = (e.type || "msg").toLowerCase();
  if (t.startsWith("conn") || t === "handshake") return "msg conn";
  if (t.startsWith("cache")) return "msg cache";
  if (t.startsWith("link")) return "msg drop";
  return "msg";
}

function draw() {
  $("#seq-received").textContent = received;
  $("#seq-dropped").textContent = dropped;
  const win = Number($("#f-window").value);
  let shown = messages;
  if (win > 0 && messages.length) {
    const newest = Date.parse(messages[messages.length - 1].time);
    shown = messages.filter((e) => newest - Date.parse(e.time) <= win * 1000);
  }
  $("#seq-count").textContent = shown.length;
  lanes = [];
  for (const e of shown) { ensureLane(laneOf(e.from_host, e.from)); ensureLane(laneOf(e.to_host, e.to)); }
  const x = (name) => LEFT + lanes.indexOf(name) * LANE_W + LANE_W / 2;
  const width = LEFT * 2 + Math.max(1, lanes.length) * LANE_W;
  const height = TOP + (shown.length + 1) * ROW_H;
  const svg = svgEl("svg", {width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
    "aria-label": "Sequence diagram of " + shown.length + " messages between " + lanes.length + " hosts"});
  lanes.forEach((name) => {
    const lx = x(name);
    const label = svgEl("text", {x: lx, y: 16, "text-anchor": "middle", class: "lane-label"});
    label.textContent = name.length > 24 ? name.slice(0, 23) + "…" : name;
    svg.append(label, svgEl("line", {x1: lx, y1: 24, x2: lx, y2: height, class: "lane-line"}));
  });
  const t0 = shown.length ? Date.parse(shown[0].time) : 0;
  shown.forEach((e, i) => {
    const y = TOP + i * ROW_H + ROW_H / 2;
    const from = laneOf(e.from_host, e.from), to = laneOf(e.to_host, e.to) || from;
    const g = svgEl("g", {class: kindClass(e), tabindex: "0", role: "button", "data-id": e.id,
      "aria-label": `${i + 1}. ${from} to ${to}, ${e.proto}: ${e.summary}`});
    const x1 = x(from), x2 = x(to);
    if (x1 === x2) {
      g.append(svgEl("circle", {cx: x1, cy: y, r: 4}));
    } else {
      const dir = x2 > x1 ? -1 : 1;
      g.append(svgEl("line", {x1, y1: y, x2, y2: y}),
        svgEl("polyline", {points: `${x2 + dir * 7},${y - 4} ${x2},${y} ${x2 + dir * 7},${y + 4}`, fill: "none", stroke: "currentColor"}));
    }
    const label = svgEl("text", {x: Math.min(x1, x2) + 6, y: y - 4});
    const s = `${i + 1}. ${e.proto} ${e.summary}`;
    label.textContent = s.length > 70 ? s.slice(0, 69) + "…" : s;
    const time = svgEl("text", {x: 2, y: y + 4, class: "time"});
    time.textContent = "+" + ((Date.parse(e.time) - t0) / 1000).toFixed(3);
    g.append(label, time);
    const open = () => showMessage(e, i + 1, g);
    g.addEventListener("click", open);
    g.addEventListener("keydown", (k) => { if (k.key === "Enter" || k.key === " ") { k.preventDefault(); open(); } });
    svg.append(g);
  });
  $("#diagram").replaceChildren(svg);
}

function showMessage(e, n, g) {
  document.querySelectorAll(".msg.selected").forEach((x) => x.classList.remove("selected"));
  g.classList.add("selected");
  const d = $("#msg-detail");
  d.hidden = false;
  d.replaceChildren(el("h3", {text: "Message " + n}),
    el("table", {},
      ...[["time", e.time], ["type", e.type || "msg"], ["from", (e.from_host ? e.from_host + " " : "") + e.from],
        ["to", (e.to_host ? e.to_host + " " : "") + (e.to || "")], ["protocol", e.proto], ["size", e.bytes + " bytes"],
        ["seen by", (e.observers || [e.host]).filter(Boolean).join(", ")], ["summary", e.summary]]
        .map(([k, v]) => el("tr", {}, el("th", {text: k}), el("td", {text: v})))));
}

// ---- scenarios, experiments and system pages ------------------------------
async function loadRuns() {
  const list = $("#run-list");
  let runs = [];
  try { runs = await (await fetch("/api/runs", {cache: "no-store"})).json(); } catch (e) { /* none */ }
  if (!runs || !runs.length) { list.replaceChildren(el("p", {class: "note", text: "No scenarios or experiments are registered in this lab."})); return; }
  list.replaceChildren(...runs.map((r) => {
    const b = el("button", {type: "button", text: "Run"});
    b.addEventListener("click", () => run(r, b));
    return el("div", {class: "run"}, b, el("strong", {text: r.kind + " " + r.name}), " — " + r.description);
  }));
}

async function run(r, button) {
  button.disabled = true;
  const out = $("#run-output");
  out.replaceChildren(el("p", {text: "Running " + r.kind + " " + r.name + "…"}));
  try {
    const quick = $("#run-quick").checked ? "?quick=1" : "";
    const res = await fetch("/api/runs/" + encodeURIComponent(r.kind) + "/" + encodeURIComponent(r.name) + quick,
      {method: "POST", headers: {"X-Applayer-Dashboard": "1"}});
    if (res.status === 409) { out.replaceChildren(el("p", {text: "Another run is in progress; try again when it ends."})); button.disabled = false; return; }
    const body = await res.json();
    const kids = [el("h3", {text: r.kind + " " + r.name + (res.ok ? " (" + body.took + ")" : " failed")}),
      el("pre", {class: "run-text", text: (body.output || "") + (body.error ? "\n" + body.error : "")})];
    for (const p of body.plots || []) kids.push(el("img", {class: "plot", src: p, alt: "plot of " + r.name}));
    out.replaceChildren(...kids);
  } catch (e) {
    out.replaceChildren(el("p", {text: "failed: " + e}));
  }
  button.disabled = false;
}

async function loadViews() {
  const views = await (await fetch("/api/views", {cache: "no-store"})).json();
  $("#view-list").replaceChildren(...(views.length ? views.map((v) => el("li", {}, el("a", {href: v.url, text: v.title + (v.host ? " (" + v.host + ")" : "")})))
    : [el("li", {text: "No system has added a page in this lab."})]));
}

// ---- start ----------------------------------------------------------------
document.addEventListener("DOMContentLoaded", () => {
  $("#seq-filter").addEventListener("submit", (ev) => { ev.preventDefault(); messages = []; connect(); draw(); });
  $("#f-window").addEventListener("change", draw);
  $("#pause").addEventListener("click", (ev) => {
    paused = !paused;
    ev.target.textContent = paused ? "Resume" : "Pause";
    ev.target.setAttribute("aria-pressed", String(paused));
  });
  $("#clear").addEventListener("click", () => { messages = []; draw(); });
  show();
  loadTopology().then(() => connect());
  setInterval(loadTopology, 2000);
});
