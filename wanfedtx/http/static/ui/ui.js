/* The federation page: reads the agent's HTTP API (same origin) and draws one card per
 * datacenter. Federation states and gateway health are watched with blocking queries
 * (?index=<X-Consul-Index>&wait=...); WAN members and each datacenter's leader and peers,
 * which have no blocking form, are polled. No framework, no build step. */
"use strict";

const WAIT = "20s";          // blocking query wait
const POLL_MS = 3000;        // members / leader / peers
const RETRY_MS = 2000;       // after a failed request
const STALE_AFTER_S = 300;   // a federation state older than this is shown as stale

const state = {
  self: null,                // /v1/agent/self
  members: [],               // /v1/agent/members?wan=1
  fedStates: [],             // /v1/internal/federation-states
  datacenters: [],           // /v1/catalog/datacenters
  perDC: {},                 // dc -> {leader, peers, gateways, gatewaysError, statusError}
  watching: new Set(),       // dcs whose gateway health is being watched
  lastUpdate: null,
};

function dcInfo(dc) {
  if (!state.perDC[dc]) {
    state.perDC[dc] = { leader: "", peers: [], gateways: null, gatewaysError: "", statusError: "" };
  }
  return state.perDC[dc];
}

async function getJSON(path, index) {
  let url = path;
  if (index !== undefined) {
    url += (url.includes("?") ? "&" : "?") + "index=" + index + "&wait=" + WAIT;
  }
  const headers = token() ? { "X-Consul-Token": token() } : {};
  const resp = await fetch(url, { cache: "no-store", headers });
  if (!resp.ok) {
    const text = (await resp.text()).trim();
    throw new Error(resp.status + " " + text);
  }
  const raw = resp.headers.get("X-Consul-Index");
  return { body: await resp.json(), index: raw === null ? 0 : Number(raw) };
}

/* An ACL token for the API, kept for this browser tab only (sessionStorage). */
const TOKEN_KEY = "wanfed-ui-token";
function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/* Run fn(index) forever as a blocking query; fn returns the new X-Consul-Index. */
async function watch(name, fn, onError) {
  let index = 0;
  for (;;) {
    try {
      const next = await fn(index);
      index = next < index ? 0 : next;   // an index going backwards starts over
    } catch (e) {
      if (onError) onError(e);
      render();
      index = 0;
      await sleep(RETRY_MS);
    }
  }
}

function gatewayService(dc) {
  const fs = state.fedStates.find((s) => s.Datacenter === dc);
  const gw = fs && (fs.MeshGateways || [])[0];
  return (gw && gw.Service && gw.Service.Service) || "mesh-gateway";
}

function watchDC(dc) {
  if (state.watching.has(dc)) return;
  state.watching.add(dc);
  watch("health-" + dc, async (index) => {
    const svc = encodeURIComponent(gatewayService(dc));
    const r = await getJSON("/v1/health/service/" + svc + "?dc=" + encodeURIComponent(dc), index);
    const info = dcInfo(dc);
    info.gateways = r.body || [];
    info.gatewaysError = "";
    touched();
    return r.index;
  }, (e) => { dcInfo(dc).gatewaysError = String(e.message || e); });
}

function knownDCs() {
  const set = new Set(state.datacenters);
  for (const s of state.fedStates) set.add(s.Datacenter);
  for (const m of state.members) if (m.Tags && m.Tags.dc) set.add(m.Tags.dc);
  const own = state.self && state.self.Config ? state.self.Config.Datacenter : "";
  const primary = state.self && state.self.Config ? state.self.Config.PrimaryDatacenter : "";
  return [...set].sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  function rank(dc) { return dc === primary ? 0 : dc === own ? 1 : 2; }
}

async function pollLoop() {
  for (;;) {
    try {
      state.self = (await getJSON("/v1/agent/self")).body;
      state.members = (await getJSON("/v1/agent/members?wan=1")).body || [];
      state.datacenters = (await getJSON("/v1/catalog/datacenters")).body || [];
      showError("");
    } catch (e) {
      showError("cannot read the agent's API: " + (e.message || e));
    }
    await Promise.all(knownDCs().map(async (dc) => {
      watchDC(dc);
      const info = dcInfo(dc);
      const q = "?dc=" + encodeURIComponent(dc);
      try {
        info.leader = (await getJSON("/v1/status/leader" + q)).body || "";
        info.peers = (await getJSON("/v1/status/peers" + q)).body || [];
        info.statusError = "";
      } catch (e) {
        info.leader = "";
        info.statusError = String(e.message || e);
      }
    }));
    touched();
    await sleep(POLL_MS);
  }
}

function touched() {
  state.lastUpdate = new Date();
  render();
}

function showError(text) {
  const el = document.getElementById("error");
  el.textContent = text;
  el.hidden = !text;
}

/* --- health ------------------------------------------------------------------------------ */

const ORDER = { passing: 0, warning: 1, critical: 2 };

function nodeHealth(csn) {
  let worst = "passing";
  for (const c of csn.Checks || []) {
    const s = ORDER[c.Status] === undefined ? "critical" : c.Status;
    if (ORDER[s] > ORDER[worst]) worst = s;
  }
  return worst;
}

/* The gateways of a DC: its live health answer, else the federation state's copy. */
function gatewaysOf(dc) {
  const info = dcInfo(dc);
  if (info.gateways !== null && !info.gatewaysError) return { list: info.gateways, source: "health" };
  const fs = state.fedStates.find((s) => s.Datacenter === dc);
  return { list: fs ? fs.MeshGateways || [] : [], source: "federation state" };
}

/* critical: every gateway critical (or none answering while some are known); warning: some. */
function dcHealth(dc) {
  const { list } = gatewaysOf(dc);
  if (!list.length) return "unknown";
  const states = list.map(nodeHealth);
  if (states.every((s) => s === "critical")) return "critical";
  if (states.some((s) => s !== "passing")) return "warning";
  return "passing";
}

/* --- rendering --------------------------------------------------------------------------- */

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") el.className = v; else el.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const STATUS = { 0: "none", 1: "alive", 2: "leaving", 3: "left", 4: "failed" };

function age(updatedAt) {
  if (!updatedAt || updatedAt.startsWith("0001-")) return null;
  const t = Date.parse(updatedAt);
  return isNaN(t) ? null : Math.max(0, Math.round((Date.now() - t) / 1000));
}

function fmtAge(s) {
  if (s === null) return "never";
  if (s < 120) return s + "s";
  if (s < 7200) return Math.round(s / 60) + "m";
  return Math.round(s / 3600) + "h";
}

function gatewayAddress(csn) {
  const svc = csn.Service || {};
  const wan = svc.TaggedAddresses && svc.TaggedAddresses.wan;
  if (wan && wan.Address) return wan.Address + ":" + wan.Port;
  return (svc.Address || (csn.Node && csn.Node.Address) || "") + ":" + (svc.Port || "");
}

function card(dc) {
  const info = dcInfo(dc);
  const cfg = (state.self && state.self.Config) || {};
  const health = dcHealth(dc);
  const servers = state.members.filter((m) => m.Tags && m.Tags.dc === dc);
  const { list, source } = gatewaysOf(dc);
  const fs = state.fedStates.find((s) => s.Datacenter === dc);
  const fsAge = fs ? age(fs.UpdatedAt) : null;

  const title = h("h3", {}, dc,
    dc === cfg.PrimaryDatacenter ? h("span", { class: "badge" }, "primary") : null,
    dc === cfg.Datacenter ? h("span", { class: "badge" }, "this agent") : null,
    h("span", { class: "badge " + health, "data-role": "dc-health" }, health));

  const serverList = h("ul", {});
  for (const m of servers.sort((a, b) => a.Name.localeCompare(b.Name))) {
    const st = STATUS[m.Status] || "unknown";
    const addr = m.Addr + ":" + m.Port;
    const leader = info.leader && info.leader.split(":")[0] === m.Addr ? " (leader)" : "";
    serverList.append(h("li", {}, h("span", { class: "badge " + st }, st), m.Name + leader, h("span", { class: "muted" }, addr)));
  }
  if (!servers.length) serverList.append(h("li", { class: "muted" }, "no WAN member"));

  const gwList = h("ul", { "data-role": "gateways" });
  for (const g of list) {
    const st = nodeHealth(g);
    gwList.append(h("li", { "data-gateway-health": st }, h("span", { class: "badge " + st }, st),
      (g.Node && g.Node.Node) || "", h("span", { class: "muted" }, gatewayAddress(g))));
  }
  if (!list.length) gwList.append(h("li", { class: "muted" }, "no mesh gateway known"));

  const freshness = fs
    ? h("span", { class: fsAge !== null && fsAge > STALE_AFTER_S ? "stale" : "" },
        "updated " + fmtAge(fsAge) + " ago, index " + fs.ModifyIndex)
    : h("span", { class: "muted" }, "no federation state");

  return h("div", { class: "dc", "data-dc": dc, "data-health": health }, title,
    h("dl", {},
      h("dt", {}, "Leader"), h("dd", {}, info.leader || (info.statusError ? h("span", { class: "badge unreachable" }, "unreachable") : "none")),
      h("dt", {}, "Servers"), h("dd", {}, serverList),
      h("dt", {}, "Gateways"), h("dd", {}, gwList, h("span", { class: "muted" }, "from " + source + (info.gatewaysError ? " (" + info.gatewaysError + ")" : ""))),
      h("dt", {}, "Federation"), h("dd", {}, freshness),
      h("dt", {}, "Raft peers"), h("dd", {}, String((info.peers || []).length))));
}

function render() {
  const cfg = (state.self && state.self.Config) || {};
  if (cfg.NodeName) {
    document.getElementById("agent").textContent =
      "agent " + cfg.NodeName + " in " + cfg.Datacenter + " (primary: " + (cfg.PrimaryDatacenter || cfg.Datacenter) + ")";
  }
  if (state.lastUpdate) {
    document.getElementById("updated").textContent = "updated " + state.lastUpdate.toLocaleTimeString();
  }
  const dcs = document.getElementById("dcs");
  dcs.replaceChildren(...knownDCs().map(card));

  const mb = document.querySelector("#members tbody");
  mb.replaceChildren(...[...state.members].sort((a, b) => a.Name.localeCompare(b.Name)).map((m) => {
    const st = STATUS[m.Status] || "unknown";
    return h("tr", { "data-member": m.Name }, h("td", {}, m.Name), h("td", {}, m.Addr + ":" + m.Port),
      h("td", {}, h("span", { class: "badge " + st }, st)), h("td", {}, (m.Tags || {}).dc || ""),
      h("td", {}, ((m.Tags || {}).build || "").split(":")[0]));
  }));

  const sb = document.querySelector("#states tbody");
  sb.replaceChildren(...state.fedStates.map((s) => {
    const a = age(s.UpdatedAt);
    return h("tr", { "data-state": s.Datacenter }, h("td", {}, s.Datacenter),
      h("td", {}, String((s.MeshGateways || []).length)), h("td", {}, s.UpdatedAt || ""),
      h("td", { class: a !== null && a > STALE_AFTER_S ? "stale" : "" }, fmtAge(a)),
      h("td", {}, String(s.ModifyIndex)), h("td", {}, String(s.PrimaryModifyIndex)));
  }));
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  try { sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value); } catch (e) { /* private mode */ }
  location.reload();
});

watch("federation-states", async (index) => {
  const r = await getJSON("/v1/internal/federation-states", index);
  state.fedStates = (r.body || []).sort((a, b) => a.Datacenter.localeCompare(b.Datacenter));
  for (const s of state.fedStates) watchDC(s.Datacenter);
  touched();
  return r.index;
}, () => {});
pollLoop();
setInterval(render, 1000);   // ages tick
