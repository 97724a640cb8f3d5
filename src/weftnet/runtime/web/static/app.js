// weftnet dashboard: renders the snapshots the daemon pushes over server-sent events.
// Plain DOM and SVG, no framework; every string from the node goes in as text, never as HTML.
"use strict";

const SVGNS = "http://www.w3.org/2000/svg";
// Keys of status() with a view of their own; every other key gets a generic section.
const KNOWN = new Set(["node_id", "address", "public_key", "endpoint", "uptime", "sessions", "transport", "dht",
  "requests_in_flight", "networks", "vpn", "tun_write_errors", "texts_dropped", "internal_errors"]);  // the last two: Protection
let token = sessionStorage.getItem("weft-token") || "";
let last = null;

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v; else if (k === "title") el.title = v; else el.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
function s(tag, attrs) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}
function bytes(n) {
  if (n === null || n === undefined) return "–";
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : n.toFixed(0)) + " " + u[i];
}
function rate(n) { return bytes(n) + "/s"; }
function ms(sec) { return sec === null || sec === undefined ? "–" : (sec * 1000).toFixed(2) + " ms"; }
function dur(sec) {
  sec = Math.floor(sec || 0);
  const d = Math.floor(sec / 86400), hh = Math.floor(sec % 86400 / 3600), mm = Math.floor(sec % 3600 / 60);
  return (d ? d + "d " : "") + (d || hh ? hh + "h " : "") + mm + "m " + (sec % 60) + "s";
}
function short(id) { return id && id.length > 20 ? id.slice(0, 14) + "…" + id.slice(-4) : id; }
function quality(rttSec) {
  if (rttSec === null || rttSec === undefined) return "qn";
  return rttSec < 0.02 ? "q0" : rttSec < 0.1 ? "q1" : rttSec < 0.3 ? "q2" : "q3";
}
function pathKind(p) {
  // Filled by the path and relay subsystems when present; a plain session is direct.
  if (p.path_kind) return p.path_kind;
  if (p.path && typeof p.path === "object" && p.path.kind) return p.path.kind;
  if (typeof p.path === "string") return p.path;
  if (p.relay || p.via) return "relay";
  return "direct";
}
function facts(dl, pairs) {
  dl.replaceChildren();
  for (const [k, v] of pairs) dl.append(h("dt", {}, k), h("dd", {}, v));
}
function flat(obj, prefix, out) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? prefix + "." + k : k;
    if (v && typeof v === "object" && !Array.isArray(v)) flat(v, key, out);
    else out.push([key, Array.isArray(v) ? v.map(x => typeof x === "object" ? JSON.stringify(x) : x).join(", ") : v]);
  }
  return out;
}

function renderNode(snap) {
  const st = snap.status;
  document.getElementById("node-short").textContent = short(st.node_id);
  document.getElementById("peer-count").textContent = snap.peer_count;
  const pairs = [["node ID", st.node_id], ["overlay address", st.address], ["endpoint", st.endpoint],
    ["uptime", dur(st.uptime)], ["requests in flight", st.requests_in_flight]];
  for (const [k, v] of Object.entries(snap.urls || {})) pairs.push([k, v]);
  facts(document.getElementById("node-facts"), pairs);
}

function linePlot(svg, series, width, height) {
  svg.replaceChildren();
  const all = series.flatMap(x => x.values);
  const max = Math.max(1, ...all);
  svg.append(s("line", { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, class: "axis" }));
  for (const { values, color } of series) {
    if (values.length < 2) continue;
    const step = width / Math.max(1, values.length - 1);
    const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 4 - (v / max) * (height - 16)).toFixed(1)}`);
    svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: color, "stroke-width": 1.5 }));
  }
  const t = s("text", { x: 4, y: 11 }); t.textContent = "max " + rate(max); svg.append(t);
}

function renderThroughput(snap) {
  const tp = snap.throughput;
  linePlot(document.getElementById("throughput-plot"),
    [{ values: tp.in, color: "var(--in)" }, { values: tp.out, color: "var(--out)" }], 600, 160);
  const n = tp.in.length;
  document.getElementById("throughput-now").textContent =
    n ? `now: in ${rate(tp.in[n - 1])}, out ${rate(tp.out[n - 1])}` : "collecting…";
}

function sparkline(points) {
  const svg = s("svg", { viewBox: "0 0 120 22", class: "spark", preserveAspectRatio: "none" });
  const vals = points.map(p => p[1]).filter(v => v !== null);
  if (vals.length < 2) return svg;
  const max = Math.max(...vals), min = Math.min(...vals), span = Math.max(0.001, max - min);
  const step = 120 / Math.max(1, points.length - 1);
  const pts = [];
  points.forEach((p, i) => { if (p[1] !== null) pts.push(`${(i * step).toFixed(1)},${(20 - ((p[1] - min) / span) * 18).toFixed(1)}`); });
  svg.append(s("polyline", { points: pts.join(" "), fill: "none", stroke: "var(--in)", "stroke-width": 1.2 }));
  const title = s("title"); title.textContent = `RTT ${min.toFixed(2)}–${max.toFixed(2)} ms`; svg.append(title);
  return svg;
}

function renderPeers(snap) {
  const tbody = document.querySelector("#peers-table tbody");
  tbody.replaceChildren();
  for (const p of snap.status.sessions) {
    const btn = h("button", { class: "ping", type: "button" }, "ping");
    btn.disabled = !token;
    btn.addEventListener("click", () => act({ op: "ping", target: p.node_id }));
    const row = h("tr", { "data-node": p.node_id },
      h("td", { class: "mono", title: p.node_id }, short(p.node_id)), h("td", { class: "mono" }, p.address),
      h("td", { class: "mono" }, p.endpoint), h("td", {}, pathKind(p)),
      h("td", { class: quality(p.srtt) }, ms(p.srtt)), h("td", {}, sparkline(snap.rtt_history[p.node_id] || [])),
      h("td", {}, bytes(p.bytes_in)), h("td", {}, bytes(p.bytes_out)),
      h("td", {}, p.session_age === null ? "–" : dur(p.session_age)), h("td", { class: "act" }, btn));
    tbody.append(row);
  }
  document.getElementById("peers-note").textContent = snap.peers_shown < snap.peer_count
    ? `(the ${snap.peers_shown} busiest of ${snap.peer_count})` : "";
}

function renderTopology(snap) {
  const svg = document.getElementById("topology-plot");
  svg.replaceChildren();
  const peers = snap.status.sessions.slice(0, 48);
  const relays = new Map();  // relay node ID -> position, when the relay subsystem reports them
  const r = 160;
  peers.forEach((p, i) => {
    const a = (2 * Math.PI * i) / Math.max(1, peers.length) - Math.PI / 2;
    p._x = r * Math.cos(a); p._y = r * Math.sin(a);
    const via = p.relay || p.via || (p.path && p.path.relay);
    if (via && typeof via === "string") relays.set(via, null);
  });
  let j = 0;
  for (const id of relays.keys()) {
    const a = (2 * Math.PI * j++) / Math.max(1, relays.size);
    relays.set(id, [70 * Math.cos(a), 70 * Math.sin(a)]);
  }
  for (const p of peers) {
    const via = p.relay || p.via || (p.path && p.path.relay);
    const q = quality(p.srtt);
    if (via && relays.get(via)) {
      const [rx, ry] = relays.get(via);
      svg.append(s("line", { x1: 0, y1: 0, x2: rx, y2: ry, class: "edge " + q, stroke: "currentColor", "stroke-dasharray": "4 3" }));
      svg.append(s("line", { x1: rx, y1: ry, x2: p._x, y2: p._y, class: "edge " + q, stroke: "currentColor", "stroke-dasharray": "4 3" }));
    } else {
      svg.append(s("line", { x1: 0, y1: 0, x2: p._x, y2: p._y, class: "edge " + q, stroke: "currentColor" }));
    }
  }
  for (const [id, pos] of relays) {
    svg.append(s("rect", { x: pos[0] - 7, y: pos[1] - 7, width: 14, height: 14, fill: "var(--muted)" }));
    const t = s("text", { x: pos[0] + 9, y: pos[1] + 3, class: "label" }); t.textContent = "relay " + short(id); svg.append(t);
  }
  for (const p of peers) {
    const c = s("circle", { cx: p._x, cy: p._y, r: 7, class: quality(p.srtt), fill: "currentColor" });
    const title = s("title"); title.textContent = `${p.node_id}\n${p.endpoint}\nRTT ${ms(p.srtt)}`; c.append(title);
    svg.append(c);
    const t = s("text", { x: p._x + (p._x >= 0 ? 9 : -9), y: p._y + 3, class: "label",
      "text-anchor": p._x >= 0 ? "start" : "end" });
    t.textContent = short(p.node_id).slice(0, 10); svg.append(t);
  }
  svg.append(s("circle", { cx: 0, cy: 0, r: 11, class: "self" }));
  const me = s("text", { x: 0, y: 26, class: "label", "text-anchor": "middle" }); me.textContent = "this node"; svg.append(me);
}

function renderNetworks(snap) {
  const body = document.getElementById("networks-body");
  const nets = snap.status.networks || [];
  if (!nets.length) { body.replaceChildren(h("p", { class: "muted" }, "none joined")); return; }
  body.replaceChildren();
  for (const n of nets) {
    const drops = Object.entries(n.drops || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "none";
    const box = h("div", { class: "net", "data-network": n.network });
    box.append(h("h3", {}, `${n.network} `, h("small", { class: "mono" }, `${n.tun || ""} ${(n.addresses || []).join(", ")}` +
      (n.netns ? ` in netns ${n.netns}` : "") + ` · mtu ${n.mtu} · ${n.members} members · ${n.flows} flows · drops: ${drops}`)));
    const tp = (snap.network_throughput || {})[n.network];
    if (tp) {
      const plot = s("svg", { viewBox: "0 0 600 60", preserveAspectRatio: "none", class: "netplot" });
      linePlot(plot, [{ values: tp.in, color: "var(--in)" }, { values: tp.out, color: "var(--out)" }], 600, 60);
      box.append(plot);
    }
    const table = h("table", {}, h("thead", {}, h("tr", {}, ...["member", "addresses", "groups", "in", "out", "drops"].map(x => h("th", {}, x)))));
    const tb = h("tbody");
    for (const m of (snap.members || {})[n.network] || []) {
      const c = (n.peers || {})[m.node_id] || {};
      const nd = Object.values(c.drops || {}).reduce((a, b) => a + b, 0);
      tb.append(h("tr", {}, h("td", { class: "mono", title: m.node_id }, short(m.node_id)),
        h("td", { class: "mono" }, m.addresses.join(", ")), h("td", {}, m.groups.join(", ") || "–"),
        h("td", {}, `${c.packets_in || 0} pkts / ${bytes(c.bytes_in || 0)}`),
        h("td", {}, `${c.packets_out || 0} pkts / ${bytes(c.bytes_out || 0)}`), h("td", {}, nd)));
    }
    table.append(tb);
    box.append(table);
    body.append(box);
  }
}

function renderDht(snap) {
  const d = snap.status.dht || {};
  facts(document.getElementById("dht-facts"), [["contacts", d.contacts], ["buckets", d.buckets],
    ["records", d.records], ["operations in flight", d.operations_in_flight], ["evictions", d.evictions]]);
  facts(document.getElementById("dht-stats"), flat({ stats: d.stats, rejected: d.rejected }, "", []));
  facts(document.getElementById("transport-stats"), flat(Object.assign({}, snap.status.transport,
    { vpn: snap.status.vpn, tun_write_errors: snap.status.tun_write_errors }), "", []));
}

function table(caption, cols, rows) {
  const t = h("table", { "data-table": caption }, h("caption", {}, caption),
    h("thead", {}, h("tr", {}, ...cols.map(c => h("th", {}, c[0])))));
  const tb = h("tbody");
  for (const r of rows) tb.append(h("tr", {}, ...cols.map(c => h("td", { class: "mono" }, c[1](r) ?? "–"))));
  t.append(tb);
  return t;
}
function sum(obj) { return Object.values(obj || {}).reduce((a, b) => a + b, 0); }

// The routing subsystems and the protections: snap.subsystems, read by runtime/opsview.py (as the metrics are).
function renderSubsystems(snap) {
  const sub = snap.subsystems || {};
  const hd = sub.hardening || {};
  facts(document.getElementById("protection-facts"), [
    ["handshakes rate-limited", hd.handshakes_rate_limited], ["cookies sent", hd.cookies_sent],
    ["half-open peers now", hd.half_open_peers],
    ["half-open expired / confirmed", `${(hd.half_open || {}).expired ?? 0} / ${(hd.half_open || {}).confirmed ?? 0}`],
    ["contacts refused (ID puzzle / prefix)", `${(hd.contacts_refused || {})["id-puzzle"] ?? 0} / ${(hd.contacts_refused || {})["prefix-limit"] ?? 0}`],
    ["records refused (peer / prefix quota)", `${(hd.store_refused || {})["peer-quota"] ?? 0} / ${(hd.store_refused || {})["prefix-quota"] ?? 0}`],
    ["texts dropped (forged / unsigned)", `${(hd.texts_dropped || {}).forged ?? 0} / ${(hd.texts_dropped || {}).unsigned ?? 0}`],
    ["peers evicted", hd.peers_evicted], ["internal errors", hd.internal_errors]]);
  const body = document.getElementById("routing-body");
  const parts = [];
  const peers = (sub.bgp || []).flatMap(sp => sp.peers.map(p => Object.assign({ instance: sp.instance }, p)));
  const r = sub.reach;
  if (r) {
    parts.push(table("NAT traversal", [["NAT", x => x.nat], ["reachable unsolicited", x => x.reachable === null ? "?" : (x.reachable ? "yes" : "no")],
      ["sessions direct / tcp / relay", x => `${x.sessions_by_path.direct} / ${x.sessions_by_path.tcp} / ${x.sessions_by_path.relay}`],
      ["relays used", x => x.relays_used], ["punches ok / failed", x => `${x.stats.punch_success || 0} / ${x.stats.punch_failed || 0}`]], [r]));
    if (r.relay) {
      parts.push(table("Relay", [["registered", x => `${x.registered} / ${x.max_sessions}`], ["forwarded", x => `${x.forwarded} pkts / ${bytes(x.forwarded_bytes)}`],
        ["refused", x => Object.entries(x.refused).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(", ") || "none"]], [r.relay]));
    }
  }
  if ((sub.bgp || []).length) {
    parts.push(table("BGP neighbours", [["speaker", r => r.instance], ["neighbour", r => r.peer], ["AS", r => r.remote_as],
      ["state", r => r.state], ["up", r => r.uptime === null ? "–" : dur(r.uptime)],
      ["prefixes in", r => r.prefixes_received], ["prefixes out", r => r.prefixes_sent],
      ["updates in/out", r => `${r.updates_in} / ${r.updates_out}`],
      ["notifications in/out", r => `${r.notifications_in} / ${r.notifications_out}`], ["last error", r => r.last_error || "–"]], peers));
  }
  if (sub.evpn && sub.evpn.vnis.length) {
    parts.push(table("EVPN instances", [["VNI", r => r.vni], ["MACs local", r => r.local_macs], ["MACs remote", r => r.remote_macs],
      ["IPs local", r => r.local_ips], ["IPs remote", r => r.remote_ips], ["remote VTEPs", r => r.remote_vteps],
      ["prefixes", r => r.remote_prefixes], ["MAC moves", r => r.mac_moves]], sub.evpn.vnis));
  }
  if (sub.vrfs && sub.vrfs.vrfs.length) {
    parts.push(table("VRFs", [["VRF", r => r.vrf], ["local routes", r => r.routes.local], ["remote routes", r => r.routes.remote],
      ["leaked", r => r.routes.vrf], ["unresolved", r => r.routes.unresolved], ["exported", r => r.exported],
      ["in", r => `${r.packets_in} pkts / ${bytes(r.bytes_in)}`], ["out", r => `${r.packets_out} pkts / ${bytes(r.bytes_out)}`],
      ["drops", r => sum(r.drops)]], sub.vrfs.vrfs));
  }
  if ((sub.l2 || []).length) {
    parts.push(table("Layer-2 networks", [["network", r => r.network], ["MACs learned", r => r.macs],
      ["IP bindings", r => r.neighbors], ["frames in/out", r => `${r.frames_in} / ${r.frames_out}`],
      ["floods out/in", r => `${r.floods_out} / ${r.floods_in}`], ["floods rate-limited", r => r.floods_rate_limited],
      ["MACs refused (quota/full)", r => `${r.mac_table.quota || 0} / ${r.mac_table.full || 0}`]], sub.l2));
  }
  document.getElementById("routing").hidden = !parts.length;
  body.replaceChildren(...parts);
}

// Sections for subsystems this page has no view of its own for (paths, relays, BGP, EVPN, VRF, links, …).
function renderExtra(snap) {
  const box = document.getElementById("extra-sections");
  const keys = Object.keys(snap.status).filter(k => !KNOWN.has(k)).sort();
  box.replaceChildren();
  for (const key of keys) {
    const val = snap.status[key];
    const sec = h("section", { class: "card wide", id: "section-" + key, "data-section": key }, h("h2", {}, key));
    if (Array.isArray(val) && val.length && val.every(x => x && typeof x === "object")) {
      const cols = [...new Set(val.flatMap(x => Object.keys(x)))];
      const table = h("table", {}, h("thead", {}, h("tr", {}, ...cols.map(c => h("th", {}, c)))));
      const tb = h("tbody");
      for (const row of val) {
        tb.append(h("tr", {}, ...cols.map(c => {
          const v = row[c];
          return h("td", { class: "mono" }, v && typeof v === "object" ? JSON.stringify(v) : (v ?? "–"));
        })));
      }
      table.append(tb); sec.append(table);
    } else if (val && typeof val === "object") {
      const rows = flat(val, "", []);
      const dl = h("dl"); facts(dl, rows.slice(0, 120)); sec.append(dl);
      if (rows.length > 120) sec.append(h("p", { class: "muted" }, `… ${rows.length - 120} more in weft status --json`));
    } else {
      sec.append(h("p", { class: "mono" }, Array.isArray(val) ? (val.length ? val.join(", ") : "none") : val));
    }
    box.append(sec);
  }
}

function render(snap) {
  last = snap;
  renderNode(snap);
  renderThroughput(snap);
  renderTopology(snap);
  renderPeers(snap);
  renderNetworks(snap);
  renderDht(snap);
  renderSubsystems(snap);
  renderExtra(snap);
}

async function act(body) {
  const out = document.getElementById("action-result");
  out.textContent = "…";
  try {
    const r = await fetch("/api/action", { method: "POST", headers: { "Content-Type": "application/json",
      "Authorization": "Bearer " + token }, body: JSON.stringify(body) });
    const j = await r.json();
    out.textContent = JSON.stringify(j.ok ? j.result : j.error, null, 1);
  } catch (e) {
    out.textContent = "failed: " + e;
  }
}

function setMode() {
  document.getElementById("reload").disabled = !token;
  document.getElementById("mode").textContent = token
    ? "Actions enabled with the token (kept in this tab only)."
    : "Read-only. To ping peers or reload the config from here, paste the token from dashboard.token in the node's state directory.";
  if (last) renderPeers(last);
}

function connect() {
  const badge = document.getElementById("conn");
  const es = new EventSource("/api/events");
  es.addEventListener("snapshot", ev => {
    badge.textContent = "live"; badge.className = "badge live";
    render(JSON.parse(ev.data));
  });
  es.onerror = () => { badge.textContent = "reconnecting…"; badge.className = "badge down"; };
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token-form").addEventListener("submit", ev => {
    ev.preventDefault();
    token = document.getElementById("token").value.trim();
    sessionStorage.setItem("weft-token", token);
    setMode();
  });
  document.getElementById("reload").addEventListener("click", () => act({ op: "reload" }));
  setMode();
  connect();
});
