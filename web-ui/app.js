// Fleet Agent's local page: plain JavaScript, no dependencies, no inline code (the
// Content-Security-Policy forbids it). Talks to the JSON API under /api/ (docs/web-api.md).
"use strict";

const state = { csrf: "", session: null, events: null, timer: null, settings: null };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

class ApiError extends Error {
  constructor(status, reason) { super(reason); this.status = status; }
}

async function api(method, path, body) {
  const opts = { method, headers: { "Accept": "application/json" }, credentials: "same-origin" };
  if (method !== "GET") opts.headers["X-CSRF-Token"] = state.csrf;
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const r = await fetch(path, opts);
  if (r.status === 204) return null;
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!r.ok) {
    const why = (data && data.reason) || `HTTP ${r.status}`;
    if (r.status === 401 && path !== "/api/login" && path !== "/api/activate") {
      await boot();
    }
    throw new ApiError(r.status, why);
  }
  return data;
}

function notice(text, bad) {
  state.noticeAt = Date.now();
  const n = $("notice");
  n.textContent = text;
  n.className = bad ? "bad" : "";
  n.hidden = !text;
  if (text && !bad) setTimeout(() => { if (n.textContent === text) n.hidden = true; }, 6000);
}

// A success message next to the form it is about (the notice at the top is out of view).
function showOk(id, text) {
  const e = $(id);
  e.textContent = text || "";
  e.hidden = !text;
  if (text) setTimeout(() => { if (e.textContent === text) e.hidden = true; }, 8000);
}

function showError(id, err) {
  const e = $(id);
  e.textContent = err ? (err.message || String(err)) : "";
  e.hidden = !err;
}

// A relative time ("12 s ago"), the exact local time as its tooltip.
function ago(ms) {
  if (ms === null || ms === undefined) return "never";
  const s = Math.round((Date.now() - ms) / 1000);
  const d = new Date(ms);
  return el("time", { datetime: d.toISOString(), title: d.toLocaleString() }, s < 0 ? `in ${fmtSecs(-s)}` : `${fmtSecs(s)} ago`);
}

function fmtSecs(s) {
  if (s < 90) return `${s} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1048576) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function badge(text, cls) { return el("span", { class: `badge ${cls || text}` }, text); }

function dl(pairs) {
  return el("dl", {}, pairs.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

// ---- navigation ----

const views = ["loading", "login", "activate", "status", "printers", "printer", "discovery", "outbox", "settings"];

function show(view) {
  // A message about another page does not follow the admin around (one set while
  // moving here, e.g. "Activated", stays).
  if (view !== state.view && Date.now() - (state.noticeAt || 0) > 1500) $("notice").hidden = true;
  state.view = view;
  for (const v of views) $(`view-${v}`).hidden = v !== view;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.view === view || (view === "printer" && a.dataset.view === "printers")) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  clearInterval(state.timer);
  state.timer = null;
  if (view !== "discovery" && state.events) { state.events.close(); state.events = null; }
  const load = { activate: loadNetworks, status: loadStatus, printers: loadPrinters, printer: loadPrinterPage, discovery: loadDiscovery, outbox: loadOutbox, settings: loadSettings }[view];
  if (load) {
    load().catch((e) => notice(e.message, true));
    if (["status", "printers", "printer", "outbox"].includes(view)) {
      state.timer = setInterval(() => load().catch(() => {}), 5000);
    }
  }
  const h = $(`view-${view}`).querySelector("h1");
  if (h) document.title = `${h.textContent} · Fleet Agent`;
}

function route() {
  const s = state.session;
  if (!s) return show("loading");
  $("nav").hidden = !s.authenticated;
  if (!s.authenticated) return show("login");
  const want = (location.hash || "#status").slice(1);
  // Before activation the settings and what will be sent (everything waits) stay reachable.
  if (want === "activate" || !s.activated && !["settings", "outbox"].includes(want)) return show("activate");
  // A printer's own page: #printer/ID (the back button and a shared link work).
  const m = /^printer\/(\d+)$/.exec(want);
  if (m) {
    state.printerId = Number(m[1]);
    return show("printer");
  }
  show(views.includes(want) && want !== "printer" ? want : "status");
}

async function boot() {
  state.session = await api("GET", "/api/session");
  state.csrf = state.session.csrf;
  $("version").textContent = `Fleet Agent ${state.session.version}`;
  route();
}

// ---- login ----

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError("login-error", null);
  try {
    const r = await api("POST", "/api/login", { password: $("login-password").value });
    state.csrf = r.csrf;
    $("login-password").value = "";
    await boot();
  } catch (e) {
    showError("login-error", e);
  }
});

// ---- activation ----

$("act-use-proxy").addEventListener("change", () => { $("act-proxy").hidden = !$("act-use-proxy").checked; });

$("activate-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError("activate-error", null);
  const pw = $("act-password").value;
  if (pw && pw !== $("act-password2").value) {
    return showError("activate-error", new Error("The two agent passwords differ."));
  }
  const body = { code: $("act-code").value.trim(), discoverAfter: $("act-discover").checked };
  if (!$("act-networks").hidden && $("act-search-local").checked) body.searchLocalNetworks = true;
  if (pw) body.password = pw;
  if ($("act-use-proxy").checked) {
    body.proxy = {
      host: $("act-proxy-host").value.trim(),
      port: Number($("act-proxy-port").value),
      user: $("act-proxy-user").value.trim() || null,
      password: $("act-proxy-password").value || null,
    };
  }
  const button = $("act-submit");
  button.disabled = true;
  button.textContent = "Activating…";
  try {
    const r = await api("POST", "/api/activate", body);
    const next = { starting: "Discovery starts now.", scheduled: "Discovery runs on its schedule.", noTargets: "Discovery starts once the cloud sends its targets." }[r.discovery] || "";
    notice(`Activated as ${r.agentId}. ${next}`);
    $("activate-form").reset();
    $("act-proxy").hidden = true;
    location.hash = r.discovery === "starting" ? "#discovery" : "#status";
    await boot();
  } catch (e) {
    showError("activate-error", e);
  } finally {
    button.disabled = false;
    button.textContent = "Activate";
  }
});

// Out of the box the configuration names no targets: offer the host's own networks
// (what discovery.local_network searches), with their sizes, as a one-click choice.
async function loadNetworks() {
  const n = await api("GET", "/api/networks");
  const text = $("act-networks-text");
  const list = $("act-networks-list");
  list.replaceChildren();
  $("act-networks").hidden = true;
  if (n.searching) {
    text.textContent = "Discovery already searches this host's networks.";
  } else if (n.otherTargets) {
    text.textContent = "Discovery searches the addresses its configuration names.";
  } else if (!n.networks.length) {
    text.textContent = "No network to search was found on this host" +
      (n.warnings.length ? ` (${n.warnings.join("; ")})` : "") +
      ". Discovery starts once the cloud sends its targets, or add discovery.include to the configuration file.";
  } else {
    const total = n.networks.reduce((a, x) => a + x.addresses, 0);
    text.textContent = `The configuration names no addresses to search. This host is on ${n.networks.length === 1 ? "this network" : "these networks"} (${total.toLocaleString()} addresses in all):`;
    for (const x of n.networks) {
      list.append(el("li", {}, el("code", {}, x.network), ` — ${x.addresses.toLocaleString()} addresses`));
    }
    for (const w of n.warnings) list.append(el("li", { class: "help" }, w));
    $("act-networks").hidden = false;
  }
}

// ---- status ----

async function loadStatus() {
  const s = await api("GET", "/api/status");
  const cloud = s.cloud;
  // The cloud's settings in force, and the last document refused or set aside (with why).
  const cloudSettings = (st) => {
    const inForce = st && st.etag ? "from the cloud, laid over the local file" : "the local file only";
    if (!st || !st.rejected) return inForce;
    return [inForce, el("br"), badge("last document refused", "warn"), " ", st.rejected.reason];
  };
  const link = cloud.connected ? badge("connected", "ok") : cloud.lastError ? badge("not reachable", "bad") : badge("not yet", "warn");
  const cards = [
    el("div", { class: "card" }, el("h2", {}, "Activation"), dl([
      ["State", s.activated ? badge("activated", "ok") : badge("not activated", "warn")],
      ["Agent id", s.agentId || "—"],
      ["Cloud", cloud.url || "not configured"],
      ["Agent", s.state === "disabled" ? badge("disabled by the cloud", "warn") : badge("running", "ok")],
    ])),
    el("div", { class: "card" }, el("h2", {}, "Cloud connection"), dl([
      ["Link", link],
      ["Last contact", ago(cloud.lastContactMs)],
      ["Last upload", ago(cloud.lastUploadMs)],
      ["Last error", cloud.lastError ? [el("span", { title: cloud.lastError }, shortError(cloud.lastError)), " (", ago(cloud.lastErrorMs), ")"] : "none"],
      ["Settings", cloudSettings(cloud.settings)],
    ])),
    el("div", { class: "card" }, el("h2", {}, "Outbox"), dl([
      ["Waiting", `${s.outbox.messages} message(s), ${bytes(s.outbox.bytes)}`],
      ["Dropped (cap)", s.outbox.dropped],
      ["Refused by the cloud", s.outbox.rejected],
    ]), el("a", { href: "#outbox" }, "See what will be sent")),
    el("div", { class: "card" }, el("h2", {}, "Schedule"), dl([
      ["Printers", s.printers],
      ["Polling", `every ${fmtSecs(s.schedule.pollIntervalSecs)}`],
      ["Next poll", s.schedule.nextPollMs ? ago(s.schedule.nextPollMs) : "when printers are known"],
      ["Discovery", s.schedule.discoveryEnabled ? `every ${fmtSecs(s.schedule.discoveryIntervalSecs)}` + (s.discovery.finished ? "" : " (running now)") : "no targets yet"],
      ["Full snapshot", `at least every ${fmtSecs(s.schedule.snapshotIntervalSecs)}`],
    ])),
    el("div", { class: "card" }, el("h2", {}, "Agent"), dl([
      ["Version", s.version],
      ["Self-update", s.agentUpdate ? `${s.agentUpdate.version} (${s.agentUpdate.phase}, from ${s.agentUpdate.fromVersion})` : "none staged"],
      ["Printer support library", `version ${s.libraryVersion}`],
      ["Started", ago(s.startedAtMs)],
      ["Jobs running", s.jobs.running.length ? s.jobs.running.map((j) => j.type).join(", ") : "none"],
      ["Jobs waiting", (s.jobs.waiting || []).length ? s.jobs.waiting.map((j) => j.type).join(", ") : "none"],
    ])),
  ];
  $("status-cards").replaceChildren(...cards);
  const rows = s.jobs.recent.map((j) => el("tr", {},
    el("td", {}, j.jobId), el("td", {}, j.type), el("td", {}, badge(j.state)), el("td", {}, ago(j.receivedAtMs))));
  $("jobs-table").tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 4 }, "No jobs yet."))]));
}

// ---- printers ----

const STATE_NAMES = {
  notCommunicating: "Not communicating", needsCredentials: "Needs credentials", error: "Error",
  warning: "Warning", lowSupply: "Low supply", ok: "OK", unknown: "Not read yet",
};
const STATE_CLASS = { notCommunicating: "bad", needsCredentials: "bad", error: "bad", warning: "warn", lowSupply: "warn", ok: "ok", unknown: "" };

function stateBadge(st) { return el("span", { class: `badge ${STATE_CLASS[st] || ""}` }, STATE_NAMES[st] || st); }

// One supply as a bar: remaining (consumables) or filling (waste), coloured by colorant;
// no number when the printer gives none ("some remaining", "unknown").
function bar(l, compact) {
  const words = { someRemaining: "some remaining", unknown: "unknown", unrestricted: "no limit" };
  const label = l.percent === null || l.percent === undefined
    ? words[l.state] || "unknown"
    : `${l.percent} %${l.kind === "filled" ? " full" : ""}`;
  const fill = l.percent === null || l.percent === undefined ? null : l.percent;
  const low = fill !== null && (l.kind === "filled" ? fill >= 90 : fill <= 10);
  const level = el("span", { class: `level c-${(l.color || "other").replace(/[^a-z]/g, "")}` });
  // Through the CSSOM: the page's CSP allows no inline style attribute.
  if (fill !== null) level.style.setProperty("--p", `${fill}%`);
  const meter = el("span", { class: `meter ${l.kind}${fill === null ? " nolevel" : ""}${low ? " low" : ""}`, role: "img", "aria-label": `${l.name}: ${label}` }, level);
  if (compact) return el("span", { class: "supply", title: `${l.name}: ${label}` }, meter);
  return el("div", { class: "supply-row" }, el("span", { class: "supply-name" }, l.name), meter, el("span", { class: "supply-level" }, label));
}

function printersQuery() {
  const q = new URLSearchParams();
  const text = $("printers-q").value.trim();
  if (text) q.set("q", text);
  if ($("printers-state").value) q.set("state", $("printers-state").value);
  q.set("sort", $("printers-sort").value);
  q.set("offset", String(state.printersOffset || 0));
  q.set("limit", "50");
  return q.toString();
}

async function loadPrinters() {
  const r = await api("GET", `/api/printers?${printersQuery()}`);
  $("printers-empty").hidden = r.all > 0;
  $("printers-summary").replaceChildren(...Object.keys(STATE_NAMES).filter((st) => r.byState[st] > 0 || ["error", "warning", "lowSupply", "notCommunicating"].includes(st)).map((st) =>
    el("button", { type: "button", class: `state-chip ${STATE_CLASS[st] || ""}${$("printers-state").value === st ? " chosen" : ""}`, "aria-pressed": String($("printers-state").value === st),
      onclick: () => { $("printers-state").value = $("printers-state").value === st ? "" : st; state.printersOffset = 0; loadPrinters().catch((e) => notice(e.message, true)); } },
    el("strong", {}, String(r.byState[st] || 0)), " ", STATE_NAMES[st])));
  const rows = r.printers.map((p) => el("tr", { class: "clickable", "data-id": p.id, onclick: () => { location.hash = `#printer/${p.id}`; } },
    el("td", {}, stateBadge(p.state), p.stateReason ? el("div", { class: "help" }, p.stateReason) : null),
    el("td", {}, el("a", { href: `#printer/${p.id}`, onclick: (e) => e.stopPropagation() }, [p.manufacturer, p.model].filter(Boolean).join(" ") || p.address),
      el("div", { class: "help" }, `${p.address}${p.serial ? ` · ${p.serial}` : ""}`)),
    el("td", {}, p.location || "—", p.name ? el("div", { class: "help" }, p.name) : null),
    el("td", {}, p.supplies.length ? el("span", { class: "supplies" }, p.supplies.map((l) => bar(l, true))) : "—",
      p.lowestSupply ? el("div", { class: "help" }, `${p.lowestSupply.name} ${p.lowestSupply.percent} %${p.lowestSupply.kind === "filled" ? " full" : ""}`) : null),
    el("td", { class: "num" }, p.pages ?? "—"),
    el("td", {}, ago(p.lastSeenMs)),
    el("td", {}, el("button", { type: "button", class: "secondary", "aria-label": `Refresh ${p.address}`, onclick: (e) => { e.stopPropagation(); refreshPrinter(p.id, e.target); } }, "Refresh")),
  ));
  const empty = r.all > 0 && !rows.length ? [el("tr", {}, el("td", { colspan: 7 }, "No printer matches."))] : [];
  $("printers-table").tBodies[0].replaceChildren(...rows, ...empty);
  const first = r.total ? r.offset + 1 : 0;
  $("printers-count").textContent = `${first}–${r.offset + r.printers.length} of ${r.total}${r.total !== r.all ? ` (${r.all} in all)` : ""}`;
  $("printers-prev").disabled = r.offset === 0;
  $("printers-next").disabled = r.offset + r.printers.length >= r.total;
}

for (const id of ["printers-state", "printers-sort"]) {
  $(id).addEventListener("change", () => { state.printersOffset = 0; loadPrinters().catch((e) => notice(e.message, true)); });
}
$("printers-q").addEventListener("input", () => {
  clearTimeout(state.searchTimer);
  state.searchTimer = setTimeout(() => { state.printersOffset = 0; loadPrinters().catch((e) => notice(e.message, true)); }, 250);
});
$("printers-prev").addEventListener("click", () => { state.printersOffset = Math.max(0, (state.printersOffset || 0) - 50); loadPrinters().catch((e) => notice(e.message, true)); });
$("printers-next").addEventListener("click", () => { state.printersOffset = (state.printersOffset || 0) + 50; loadPrinters().catch((e) => notice(e.message, true)); });

async function refreshPrinter(id, button) {
  button.disabled = true;
  button.textContent = "Polling…";
  try {
    const r = await api("POST", `/api/printers/${id}/refresh`);
    notice(r.ok ? `${r.address} refreshed.` : `${r.address}: ${r.failure}`, !r.ok);
    if (state.view === "printer") await loadPrinterPage();
    else await loadPrinters();
  } catch (e) {
    notice(e.message, true);
  } finally {
    button.disabled = false;
    button.textContent = "Refresh";
  }
}

function supplyLevel(s) {
  const ext = s.ext || {};
  if (s.percentRemaining !== null && s.percentRemaining !== undefined) return `${Math.round(s.percentRemaining)} %`;
  if (ext.percentFilled !== undefined && ext.percentFilled !== null) return `${Math.round(ext.percentFilled)} % full`;
  return { someRemaining: "some remaining", unknown: "unknown", unrestricted: "unrestricted" }[ext.levelState] || "—";
}

// device.unavailable grouped by section and reason: "alerts: prtAlertGroup, prtAlertCode — no answer ...".
function unreadLines(list) {
  const groups = new Map();
  for (const u of list) {
    const k = `${u.section}\u0000${u.reason}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(u.object || u.oid);
  }
  return [...groups].map(([k, objects]) => {
    const [section, reason] = k.split("\u0000");
    return `${section}: ${objects.join(", ")} — ${reason}`;
  });
}

async function loadPrinterPage() {
  const id = state.printerId;
  const p = await api("GET", `/api/printers/${id}`);
  const r = p.report || {};
  const d = r.device || {};
  const c = r.counters || {};
  const box = $("printer-detail");
  const unread = (section) => (d.unavailable || []).some((u) => u.section === section);
  const supplies = (r.supplies || []).map((s, i) => el("tr", {},
    el("td", {}, s.description || "—", s.serialNumber ? el("div", { class: "help" }, `serial ${s.serialNumber}${s.ext && s.ext.partNumber ? `, part ${s.ext.partNumber}` : ""}`) : ""),
    el("td", {}, s.type || "—"), el("td", {}, s.color || "—"),
    el("td", {}, p.levels && p.levels[i] ? bar(p.levels[i], true) : "", " ", supplyLevel(s)),
    el("td", { class: "num" }, s.ext ? String(s.ext.prtMarkerSuppliesLevel ?? "—") : "—"),
    el("td", { class: "num" }, s.ext ? String(s.ext.prtMarkerSuppliesMaxCapacity ?? "—") : "—"),
    el("td", {}, s.ext && s.ext.levelState ? s.ext.levelState : "—")));
  const alerts = (r.alerts || []).map((a) => el("li", {}, badge(a.status), " ", a.issue || a.description || a.alertKey || ""));
  // The 5-s refresh keeps what the admin opened.
  const wasOpen = state.openReport === id && !!box.querySelector("details.report[open]");
  state.openReport = id;
  const title = `${[r.manufacturer, r.modelName].filter(Boolean).join(" ") || "Printer"} at ${p.address}`;
  $("printer-title").textContent = title;
  document.title = `${title} · Fleet Agent`;
  box.replaceChildren(
    el("div", { class: "card" }, dl([
      ["State", [stateBadge(p.state), p.stateReason ? ` ${p.stateReason}` : ""]],
      ["Serial", r.serialNumber || "—"], ["Reachability", badge(p.health)], ["Reason", p.healthReason || "—"],
      ["Last seen", ago(p.lastSeenMs)], ["System name", d.sysName || "—"], ["Location", d.sysLocation || "—"],
      ["Firmware", d.firmwareVersion || d.sysDescr || "—"],
      ["Page count", c.lifetimeCount != null ? `${c.lifetimeCount} ${c.lifetimeCountUnit || ""}` : "—"],
      ...([c.printSideCount, c.copySideCount, c.faxSideCount].some((x) => x != null)
        ? [["Print / copy / fax", [c.printSideCount, c.copySideCount, c.faxSideCount].map((x) => x ?? "—").join(" / ")]] : []),
      ["Agent quirks", p.agentQuirks || "none"],
      ["Commands", (p.commands || []).length ? p.commands.join(", ") : "none: an unknown vendor is only read"],
    ]), el("button", { type: "button", class: "secondary", onclick: (e) => refreshPrinter(id, e.target) }, "Refresh now")),
    (p.levels || []).length ? el("div", { class: "card supply-bars" }, el("h2", {}, "Supply levels"), p.levels.map((l) => bar(l, false))) : "",
    (d.unavailable || []).length
      ? el("div", { class: "help", id: "printer-unread" },
        el("p", {}, "Not read in the last poll (unknown, not empty; the last values read are kept for the cloud):"),
        el("ul", {}, unreadLines(d.unavailable).map((line) => el("li", {}, line))))
      : "",
    el("h2", {}, "Supplies"),
    el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, ["Description", "Type", "Colour", "Level", "Raw level", "Raw max", "Level state"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, supplies.length ? supplies : el("tr", {}, el("td", { colspan: 7 }, unread("supplies") ? "Not read in the last poll." : "No supplies reported."))))),
    el("h2", {}, "Alerts"),
    alerts.length ? el("ul", {}, alerts) : el("p", {}, unread("alerts") ? "Not read in the last poll (unknown)." : "No alerts."),
    el("details", { class: "meters", open: state.openMeters === id, ontoggle: (e) => { state.openMeters = e.target.open ? id : null; } },
      el("summary", {}, `Meters (${(r.meters || []).length})`),
      (r.meters || []).length
        ? el("div", { class: "scroll" }, el("table", {},
          el("thead", {}, el("tr", {}, ["Meter", "Value", "Unit", "Counts", "OID"].map((h) => el("th", { scope: "col" }, h)))),
          el("tbody", {}, r.meters.map((m) => el("tr", {},
            el("td", {}, m.label || m.rule || "not in the support library"),
            el("td", { class: "num" }, Number(m.value).toLocaleString()),
            el("td", {}, m.unit || "—"),
            el("td", {}, m.function ? `${m.function}, ${m.colour}` : "—"),
            el("td", {}, el("code", {}, m.oid)))))))
        : el("p", {}, unread("meters") ? "Not read in the last poll (unknown)." : "No usage counters reported.")),
    (d.inputTrays || []).length ? el("h2", {}, "Trays") : "",
    (d.inputTrays || []).length ? el("div", { class: "scroll" }, el("table", {},
      el("thead", {}, el("tr", {}, ["Tray", "Media", "Level", "Capacity"].map((t) => el("th", { scope: "col" }, t)))),
      el("tbody", {}, d.inputTrays.map((t) => el("tr", {},
        el("td", {}, t.name || t.index), el("td", {}, t.mediaName || "—"),
        el("td", { class: "num" }, t.percent != null ? `${t.percent} %` : ({ someRemaining: "some", unknown: "unknown", unrestricted: "no limit" }[t.levelState] || "—")),
        el("td", { class: "num" }, t.maxCapacity != null && t.maxCapacity >= 0 ? String(t.maxCapacity) : "—")))))) : "",
    el("h2", {}, "Events"),
    (p.events || []).length
      ? el("ul", { class: "events" }, p.events.map((e) => el("li", {}, el("span", { class: "help" }, new Date(e.atMs).toLocaleString()), " ", eventText(e))))
      : el("p", { class: "help" }, "No events yet (health changes, counter resets, supplies replaced, alerts, moves)."),
    el("div", { class: "card", id: "printer-trends" }, ...(state.trends && state.trends.id === id ? trends(state.trends.h) : [el("h2", {}, "Trends"), el("p", { class: "help" }, "Loading…")])),
    el("details", { class: "report", open: wasOpen }, el("summary", {}, "Full report (JSON)"), el("pre", {}, JSON.stringify(r, null, 2))),
  );
  const h = await api("GET", `/api/printers/${id}/history`);
  state.trends = { id, h };
  if (state.printerId === id) $("printer-trends").replaceChildren(...trends(h));
}

// An event in words: health changes, counter resets, supplies replaced, alerts, moves.
function eventText(e) {
  const d = e.detail || {};
  switch (e.kind) {
    case "healthChanged": return `State: ${d.from || "?"} → ${d.to || "?"}${d.reason ? ` (${d.reason})` : ""}`;
    case "counterReset": return `Page counter reset${d.from != null ? ` (${d.from} → ${d.to})` : ""}`;
    case "counterJump": return `Page counter jumped${d.from != null ? ` (${d.from} → ${d.to})` : ""}`;
    case "supplyReplaced": return `Supply replaced: ${d.description || d.supplyKey || ""}`;
    case "alertRaised": return `Alert: ${d.issue || d.alertKey || ""}`;
    case "alertCleared": return d.count ? `${d.count} alert(s) cleared` : "Alert cleared";
    case "moved": return `Moved from ${d.from} to ${d.to}`;
    case "quirksLearned": return `Learned how to ask its SNMP agent${d.quirks ? `: ${d.quirks}` : ""}`;
    default: return e.kind;
  }
}

// ---- trends: page count and supply levels, one point a day, in plain SVG ----

function svg(tag, attrs, ...children) {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children.flat()) if (c) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

const INK = { black: "#222", cyan: "#00a3d9", magenta: "#d6007e", yellow: "#e6b800" };

// One chart: series of [x index, y] over `n` days, y from lo to hi.
function chart(title, n, lo, hi, series, first, last, unit) {
  const W = 600, H = 150, L = 56, B = 20;
  const x = (i) => L + (n > 1 ? (i / (n - 1)) * (W - L - 8) : 0);
  const y = (v) => 8 + (hi === lo ? 0.5 : (hi - v) / (hi - lo)) * (H - B - 8);
  const lines = series.map((s) => svg("polyline", { points: s.points.map(([i, v]) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" "), fill: "none", stroke: s.color, "stroke-width": 2 },
    svg("title", {}, s.name)));
  return el("figure", { class: "chart" }, el("figcaption", {}, title),
    svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title },
      svg("line", { x1: L, y1: H - B, x2: W - 8, y2: H - B, stroke: "#b7c0cd" }),
      svg("line", { x1: L, y1: 8, x2: L, y2: H - B, stroke: "#b7c0cd" }),
      svg("text", { x: L - 4, y: 14, "text-anchor": "end", "font-size": 11, fill: "#5b6475" }, `${hi.toLocaleString()}${unit}`),
      svg("text", { x: L - 4, y: H - B, "text-anchor": "end", "font-size": 11, fill: "#5b6475" }, `${lo.toLocaleString()}${unit}`),
      svg("text", { x: L, y: H - 4, "font-size": 11, fill: "#5b6475" }, first),
      svg("text", { x: W - 8, y: H - 4, "text-anchor": "end", "font-size": 11, fill: "#5b6475" }, last),
      ...lines));
}

function trends(h) {
  const out = [el("h2", {}, "Trends")];
  const days = h.days || [];
  if (days.length < 2) {
    out.push(el("p", { class: "help" }, "The agent keeps one point a day (page count and supply levels, for 400 days); trends appear from the second day of readings."));
  } else {
    const first = days[0].day, last = days[days.length - 1].day;
    const pages = days.map((d, i) => [i, d.pages]).filter(([, v]) => v !== null && v !== undefined);
    if (pages.length > 1) {
      const vals = pages.map(([, v]) => v);
      out.push(chart("Page count", days.length, Math.min(...vals), Math.max(...vals), [{ name: "Pages", color: "#1f5fbf", points: pages }], first, last, ""));
    }
    const grey = ["#7d8797", "#8a6d4b", "#4b7d6d", "#6d4b8a"];
    const series = (h.supplies || []).map((s, n) => ({
      name: s.name,
      color: INK[s.color] || grey[n % grey.length],
      points: days.map((d, i) => [i, d.levels ? d.levels[s.key] : null]).filter(([, v]) => v !== null && v !== undefined),
    })).filter((s) => s.points.length > 1);
    if (series.length) {
      out.push(chart("Supply levels (waste receptacles: filled)", days.length, 0, 100, series, first, last, " %"));
      out.push(el("p", { class: "legend" }, series.map((s) => {
        const swatch = el("span", { class: "swatch" });
        swatch.style.background = s.color;
        return el("span", {}, swatch, s.name);
      })));
    }
  }
  const est = h.estimates || [];
  out.push(est.length
    ? el("ul", { class: "estimates" }, est.map((e) => el("li", {}, el("strong", {}, e.name), `: runs out around ${e.runsOutOn} (in ${e.daysLeft} days; ${e.basis})`)))
    : el("p", { class: "help" }, "No run-out date yet: it needs at least 4 daily readings over a week of steady use since the supply was last replaced."));
  return out;
}

// ---- discovery ----

function showProgress(p) {
  const running = !p.finished;
  // A small range is searched in milliseconds: say when the last run ended, so a click
  // on "Discover now" visibly did something.
  const ended = p.finishedAtMs ? new Date(p.finishedAtMs) : null;
  const justNow = ended && state.discoverAskedAt && p.finishedAtMs >= state.discoverAskedAt - 1000;
  $("discovery-state").textContent = running ? "Running…"
    : ended ? `${justNow ? "Finished just now" : "Last run finished"} at ${ended.toLocaleTimeString()}` : "Idle";
  $("discover-now").disabled = running;
  const bar = $("discovery-progress");
  bar.max = Math.max(p.total, 1);
  bar.value = running ? p.done : (p.total ? p.total : 0);
  $("discovery-figures").textContent = p.total
    ? `${p.done} of ${p.total} addresses, ${p.found} printer(s) found` + (running ? `, ${Math.round(p.rate)} addresses/s, about ${fmtSecs(Math.round(p.etaSecs))} left` : "")
    : (running ? "Preparing the address list…" : "");
}

function reportQuery() {
  const q = new URLSearchParams();
  const f = $("report-filter").value.trim();
  const o = $("report-outcome").value;
  if (f) q.set("q", f);
  if (o) q.set("outcome", o);
  const s = q.toString();
  return s ? `?${s}` : "";
}

// An error chain ("cloud: temporarily unavailable: error sending request ...: tunnel
// error: ...") cut to its first two links; the whole chain is the element's title.
function shortError(text) {
  const parts = String(text).split(": ");
  return parts.length > 2 ? `${parts.slice(0, 2).join(": ")} …` : String(text);
}

// How discovery knows a device, in words: "serial FAMLX0000001 (acme imaging)", "MAC …".
function deviceKeyText(k) {
  if (!k) return null;
  const [kind, rest] = [k.slice(0, k.indexOf(":")), k.slice(k.indexOf(":") + 1)];
  if (kind === "sn") {
    const [vendor, serial] = rest.includes("|") ? rest.split("|", 2) : ["", rest];
    return `serial ${serial}${vendor ? ` (${vendor})` : ""}`;
  }
  return { mac: `MAC ${rest}`, uuid: `UUID ${rest}`, ip: `address ${rest}` }[kind] || k;
}

// Report rows keep the discovery module's field names (device_key, sys_descr, ...).
function field(r, ...names) {
  for (const n of names) if (r[n] !== undefined && r[n] !== null) return r[n];
  return null;
}

function outcomeDetail(r) {
  switch (r.outcome) {
    case "found": {
      const moved = field(r, "moved_from", "movedFrom");
      return [deviceKeyText(field(r, "device_key", "deviceKey")), r.new ? "new" : "known", moved ? `moved from ${moved}` : null].filter(Boolean).join(", ");
    }
    case "duplicate": return `same printer as ${field(r, "first_address", "firstAddress")} (${deviceKeyText(field(r, "device_key", "deviceKey"))})`;
    case "notAPrinter": return [field(r, "sys_descr", "sysDescr"), field(r, "sysObjectID", "sys_object_id")].filter(Boolean).join(" · ") || "no Printer-MIB";
    case "noAnswer": return "no answer with any SNMP profile (wrong community, SNMP off, or no host)";
    case "unreachable": return "ICMP port unreachable: no SNMP agent at this address";
    case "excluded": return "excluded by the discovery criteria";
    case "dnsFailure": return r.reason || "the name does not resolve";
    case "snmpError": return [r.code, r.reason].filter(Boolean).join(": ") || "SNMP error";
    case "v3UnknownUser": return "SNMPv3: unknown user";
    case "v3WrongDigest": return "SNMPv3: wrong authentication password";
    case "v3NotInTimeWindow": return "SNMPv3: not in time window";
    default: return "";
  }
}

async function loadReport() {
  const rows = await api("GET", `/api/discovery${reportQuery()}`);
  $("report-csv").href = `/api/discovery.csv${reportQuery()}`;
  $("report-table").tBodies[0].replaceChildren(...rows.map((r) => el("tr", {},
    el("td", {}, r.address, r.name ? el("div", { class: "help" }, r.name) : null),
    el("td", {}, badge(r.outcome)),
    el("td", {}, outcomeDetail(r)),
    el("td", {}, r.profile || "—"),
    el("td", {}, (r.sources || []).join(", ")))));
  $("report-count").textContent = `${rows.length} address(es) shown.`;
}

async function loadDiscovery() {
  await loadReport();
  if (!state.events) {
    state.events = new EventSource("/api/discovery/events");
    let wasRunning = false;
    state.events.addEventListener("progress", (ev) => {
      const p = JSON.parse(ev.data);
      showProgress(p);
      if (wasRunning && p.finished) loadReport().catch(() => {});
      wasRunning = !p.finished;
    });
  }
}

$("discover-now").addEventListener("click", async () => {
  try {
    state.discoverAskedAt = Date.now();
    await api("POST", "/api/discovery/run");
    $("discovery-state").textContent = "Starting…";
    $("discover-now").disabled = true;
  } catch (e) {
    notice(e.message, true);
  }
});
let filterTimer = null;
$("report-filter").addEventListener("input", () => { clearTimeout(filterTimer); filterTimer = setTimeout(() => loadReport().catch((e) => notice(e.message, true)), 250); });
$("report-outcome").addEventListener("change", () => loadReport().catch((e) => notice(e.message, true)));

// ---- outbox ----

function message(m, when) {
  return el("details", {},
    el("summary", {}, `${m.kind}${m.printerKey ? ` · ${m.printerKey}` : ""} · ${m.messageId}`, when ? [" · ", when] : ""),
    el("pre", {}, JSON.stringify(m.body, null, 2)));
}

async function loadOutbox() {
  const o = await api("GET", "/api/outbox");
  const open = new Set([...document.querySelectorAll("#outbox-pending details[open] summary")].map((s) => s.textContent));
  $("outbox-stats").textContent = `${o.stats.messages} message(s) waiting, ${bytes(o.stats.bytes)}; ${o.stats.dropped} dropped by the size cap; ${o.stats.rejected} refused by the cloud.`;
  const pending = o.pending.map((m) => message(m, `${bytes(m.bytes)}${m.attempts ? `, ${m.attempts} attempt(s)` : ""}`));
  for (const d of pending) if (open.has(d.querySelector("summary").textContent)) d.open = true;
  $("outbox-pending").replaceChildren(...(pending.length ? pending : [el("p", {}, "Nothing waiting: everything has been sent.")]));
  $("outbox-last").replaceChildren(o.lastSent ? message(o.lastSent, ["sent ", ago(o.lastSent.sentAtMs)]) : el("p", {}, "Nothing sent yet."));
}

// ---- settings ----

async function loadSettings() {
  const s = await api("GET", "/api/settings");
  state.settings = s;
  const fp = s.fileProxy;
  if (s.proxy) {
    $("proxy-host").value = s.proxy.host;
    $("proxy-port").value = s.proxy.port;
    $("proxy-user").value = s.proxy.user || "";
    $("proxy-password").placeholder = s.proxy.passwordSet ? "set (leave empty to keep)" : "";
    $("proxy-source").textContent = "This proxy, set here, is used to reach the cloud.";
  } else {
    $("proxy-source").textContent = fp.mode === "http"
      ? `The configuration file's proxy is in use: ${fp.url}${fp.user ? ` (user ${fp.user})` : ""}. A proxy saved here replaces it.`
      : `No proxy set here; the configuration file says: ${fp.mode === "none" ? "no proxy" : "the system's proxy settings"}.`;
  }
  $("password-title").textContent = s.passwordSet ? "Change the agent password" : "Create an agent password";
  $("password-current-wrap").hidden = !s.passwordSet;
  $("localhost-only").checked = s.localhostOnly;
  $("localhost-only").disabled = s.localhostOnly && !s.passwordSet;
  $("listen-help").textContent = s.remote
    ? `Other computers open this page at https://${location.hostname === "localhost" ? "<this computer>" : location.hostname}:${s.remote.port}/ (listening on ${s.remote.listen}). Their browser warns about the agent's own certificate: check that it shows the SHA-256 fingerprint ${s.remote.fingerprint}.`
    : s.passwordSet
      ? `Only this computer can open the page (${s.listen}). Untick to open it to other computers over HTTPS, with a certificate the agent makes.`
      : `Only this computer can open the page (${s.listen}). Create an agent password first to open it to other computers.`;
  $("log-level").value = ["error", "warn", "info", "debug", "trace"].includes(s.logLevel) ? s.logLevel : "info";
  $("logout").hidden = !s.passwordSet;
}

// The agent tries a proxy before saving it; one that does not reach the cloud is saved
// only when asked again ("Save anyway": the cloud may be down, not the proxy).
async function saveProxy(force) {
  showError("proxy-error", null);
  showOk("proxy-ok", null);
  $("proxy-force").hidden = true;
  try {
    await api("PUT", "/api/settings/proxy", {
      host: $("proxy-host").value.trim(), port: Number($("proxy-port").value),
      user: $("proxy-user").value.trim() || null, password: $("proxy-password").value || null,
      force,
    });
    $("proxy-password").value = "";
    showOk("proxy-ok", force ? "Proxy saved without reaching the cloud through it; the cloud connection restarts with it." : "Proxy tried and saved; the cloud connection restarts with it.");
    await loadSettings();
  } catch (e) {
    showError("proxy-error", e);
    $("proxy-force").hidden = e.status !== 502;
  }
}

$("proxy-form").addEventListener("submit", (ev) => { ev.preventDefault(); saveProxy(false); });
$("proxy-force").addEventListener("click", () => saveProxy(true));

$("proxy-clear").addEventListener("click", async () => {
  showError("proxy-error", null);
  $("proxy-force").hidden = true;
  try {
    await api("PUT", "/api/settings/proxy", { clear: true });
    $("proxy-form").reset();
    showOk("proxy-ok", "The configuration file's proxy setting is used again.");
    await loadSettings();
  } catch (e) { showError("proxy-error", e); }
});

$("password-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  showError("password-error", null);
  if ($("password-new").value !== $("password-new2").value) return showError("password-error", new Error("The two new passwords differ."));
  try {
    const r = await api("POST", "/api/password", { current: $("password-current").value || null, new: $("password-new").value });
    state.csrf = r.csrf;
    $("password-form").reset();
    showOk("password-ok", "Password saved. Other browsers must log in again.");
    await boot();
  } catch (e) { showError("password-error", e); }
});

$("localhost-only").addEventListener("change", async () => {
  const on = $("localhost-only").checked;
  if (!on && !confirm("Allow other computers to open this page? Only do this on a trusted network, with an agent password.")) {
    $("localhost-only").checked = true;
    return;
  }
  showError("security-error", null);
  try {
    const r = await api("PUT", "/api/settings/security", { localhostOnly: on });
    showOk("security-ok", on ? "Only this computer may open the page." : `Other computers may open the page over HTTPS (certificate SHA-256 ${r.fingerprint}).`);
  } catch (e) {
    $("localhost-only").checked = !on;
    showError("security-error", e);
  }
  await loadSettings().catch(() => {});
});

$("log-level").addEventListener("change", async () => {
  try {
    await api("PUT", "/api/settings/log-level", { logLevel: $("log-level").value });
    notice(`Log level: ${$("log-level").value}.`);
  } catch (e) { notice(e.message, true); }
});

$("logout").addEventListener("click", async () => {
  try { await api("POST", "/api/logout"); } catch (_) { /* the session is gone either way */ }
  await boot();
});

window.addEventListener("hashchange", route);
boot().catch((e) => notice(`The agent does not answer: ${e.message}`, true));
