// realmpy Studio: the page's behaviour, plain JavaScript (no framework, no build step).
// It talks to the JSON API of realmpy/tools/studio/server.py and listens to its
// Server-Sent Events, which the server sends when the library notifies it of a commit.
"use strict";

const TOKEN = window.STUDIO_TOKEN;
const PAGE = 50;
const state = {
  info: null, cls: null, query: "", args: "[]", sort: null, desc: false, offset: 0,
  total: 0, detail: null, // {cls, id}
};

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : String(c));
  return node;
};

async function api(path, params = {}, body = undefined) {
  const url = new URL(path, window.location.href);
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) url.searchParams.set(k, v);
  const init = { headers: { "X-Studio-Token": TOKEN } };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(url, init);
  const data = await resp.json();
  if (!resp.ok) { const err = new Error(data.error || resp.statusText); err.data = data; err.status = resp.status; throw err; }
  return data;
}

function classInfo(name) { return state.info.classes.find((c) => c.name === name); }
function describe(p) {
  let t = p.target || p.type;
  if (p.optional && p.type !== "mixed") t += "?"; // mixed holds null among its values
  if (p.collection === "list") return `list[${t}]`;
  if (p.collection === "set") return `set[${t}]`;
  if (p.collection === "dict") return `dict[${t}]`;
  return t;
}
function idText(id, cls) {
  const c = cls && classInfo(cls);
  if (c && !c.primary_key) return `#${id}`; // a class without a primary key: the realm's sequence number
  if (typeof id === "string") return id;
  return tagText(id);
}

// ---------------------------------------------------------------- values

function tagText(v) {
  if (!v || typeof v !== "object" || Object.keys(v).length !== 1) return JSON.stringify(v);
  const [tag, payload] = Object.entries(v)[0];
  if (tag === "$date" || tag === "$decimal" || tag === "$oid" || tag === "$uuid" || tag === "$float") return String(payload);
  if (tag === "$bytes") return `<${atob(payload).length} bytes>`;
  return JSON.stringify(v);
}

function renderValue(p, v, full = false) {
  if (v === null || v === undefined) return el("span", { class: "null" }, "null");
  if (p.collection === "list" || p.collection === "set" || p.collection === "dict") {
    const items = p.collection === "list" ? v : p.collection === "set" ? v.$set : v.$dict;
    const entries = p.collection === "dict" ? Object.entries(items) : items.map((x, i) => [i, x]);
    const inner = { ...p, collection: null };
    const span = el("span", {}, p.collection === "dict" ? "{" : "[");
    const shown = full ? entries : entries.slice(0, 5);
    shown.forEach(([k, x], i) => {
      if (i) span.append(", ");
      if (p.collection === "dict") span.append(`${k}: `);
      span.append(renderValue(inner, x, full));
    });
    if (shown.length < entries.length) span.append(`, … ${entries.length - shown.length} more`);
    span.append(p.collection === "dict" ? "}" : "]");
    return span;
  }
  if (p.type === "mixed") return renderMixed(v, full);
  if (p.type === "link") {
    const id = v.$link;
    return el("span", { class: "link", "data-target": p.target, onclick: (e) => { e.stopPropagation(); openDetail(p.target, id); } },
      `${p.target} ${idText(id, p.target)}`);
  }
  if (p.type === "embedded") {
    const c = classInfo(p.target);
    const span = el("span", {}, `${p.target} {`);
    c.properties.forEach((q, i) => {
      if (i) span.append(", ");
      span.append(`${q.name}: `, renderValue(q, v[q.name], full));
    });
    span.append("}");
    return span;
  }
  if (typeof v === "object") return el("span", { class: "tag" }, tagText(v));
  if (Object.is(v, -0)) return el("span", {}, "-0.0");
  return el("span", {}, typeof v === "string" ? v : JSON.stringify(v));
}

// A mixed value (realmpy/tools/jsonformat.py): any scalar, a nested list
// or {"$dict": {...}}, or {"$link": ["Class", id]} to an object of any class.
function renderMixed(v, full) {
  if (v === null || v === undefined) return el("span", { class: "null" }, "null");
  const nested = Array.isArray(v) ? v.map((x, i) => [i, x])
    : v && typeof v === "object" && v.$dict && Object.keys(v).length === 1 ? Object.entries(v.$dict) : null;
  if (nested) {
    const isList = Array.isArray(v);
    const span = el("span", {}, isList ? "[" : "{");
    const shown = full ? nested : nested.slice(0, 5);
    shown.forEach(([k, x], i) => {
      if (i) span.append(", ");
      if (!isList) span.append(`${k}: `);
      span.append(renderMixed(x, full));
    });
    if (shown.length < nested.length) span.append(`, … ${nested.length - shown.length} more`);
    span.append(isList ? "]" : "}");
    return span;
  }
  if (v && typeof v === "object" && Array.isArray(v.$link) && Object.keys(v).length === 1) {
    const [cls, id] = v.$link;
    return el("span", { class: "link", "data-target": cls, onclick: (e) => { e.stopPropagation(); openDetail(cls, id); } },
      `${cls} ${idText(id, cls)}`);
  }
  if (typeof v === "object") return el("span", { class: "tag" }, tagText(v));
  // JSON text, so that the string "5" and the number 5 look different
  return el("span", {}, JSON.stringify(v));
}

// Text in an editor -> the JSON value the API decodes for property p.
function parseEdit(p, text) {
  if (!p.collection && p.type === "str") return text;
  if (text.trim() === "" && p.optional) return null;
  if (!p.collection && ["datetime", "decimal", "objectid", "uuid"].includes(p.type) && !/^\s*[{"n]/.test(text)) return text.trim();
  return JSON.parse(text);
}
function editText(p, v) {
  if (!p.collection && p.type === "str" && typeof v === "string") return v;
  if (v && typeof v === "object" && !p.collection && ["$date", "$decimal", "$oid", "$uuid"].includes(Object.keys(v)[0])) return Object.values(v)[0];
  return JSON.stringify(v, null, 1);
}
function newValue(p) {
  if (p.collection === "list") return [];
  if (p.collection === "set") return { $set: [] };
  if (p.collection === "dict") return { $dict: {} };
  if (p.optional) return null;
  switch (p.type) {
    case "str": return "";
    case "int": case "counter": return p.primary_key ? Date.now() : 0;
    case "float": return 0.0;
    case "bool": return false;
    case "bytes": return { $bytes: "" };
    case "datetime": return { $date: new Date().toISOString().replace("Z", "+00:00") };
    case "decimal": return { $decimal: "0" };
    case "objectid": return { $oid: [...crypto.getRandomValues(new Uint8Array(12))].map((b) => b.toString(16).padStart(2, "0")).join("") };
    case "uuid": return { $uuid: crypto.randomUUID() };
    case "embedded": return {};
    default: return null;
  }
}

// ---------------------------------------------------------------- classes and sync

async function loadInfo() {
  state.info = await api("api/info");
  $("path").textContent = state.info.path;
  $("version").textContent = `version ${state.info.version}`;
  $("mode").textContent = state.info.read_only ? "read-only" : "";
  $("mode").className = state.info.read_only ? "badge ro" : "";
  $("add").hidden = state.info.read_only;
  $("delete").hidden = state.info.read_only;
  const ul = $("classes");
  const old = new Map([...ul.children].map((li) => [li.dataset.class, li.querySelector(".count").textContent]));
  ul.replaceChildren();
  for (const c of state.info.classes) {
    const count = c.embedded ? "embedded" : String(c.count);
    const li = el("li", { "data-class": c.name, class: c.embedded ? "embedded" : "" },
      el("span", { class: "name" }, c.name), el("span", { class: "count" }, count));
    if (!c.embedded) li.addEventListener("click", () => selectClass(c.name));
    if (c.name === state.cls) li.classList.add("selected");
    if (old.has(c.name) && old.get(c.name) !== count) li.classList.add("flash");
    ul.append(li);
  }
  renderSync(state.info.sync);
  if (!state.cls) {
    const first = state.info.classes.find((c) => !c.embedded);
    if (first) await selectClass(first.name);
  }
}

function renderSync(sync) {
  $("sync").hidden = !sync;
  if (!sync) return;
  const dl = $("sync-state");
  dl.replaceChildren();
  const rows = [
    ["agent", sync.agent_pid ? `pid ${sync.agent_pid}` : "none running"],
    ["connection", sync.connection_state],
    ["session", sync.session_state],
    ["to upload", `${sync.pending_changesets} changesets`],
    ["subscriptions", `v${sync.subscription_set.version} ${sync.subscription_set.state}`],
  ];
  if (sync.error) rows.push(["error", sync.error]);
  for (const [k, v] of rows) dl.append(el("dt", {}, k), el("dd", { "data-sync": k }, v));
  const ul = $("subscriptions");
  ul.replaceChildren(...sync.subscriptions.map((s) => el("li", {}, `${s.name || "(unnamed)"}: ${s.class} ${s.query}`)));
}

async function selectClass(name) {
  state.cls = name; state.offset = 0; state.sort = null; state.desc = false;
  for (const li of $("classes").children) li.classList.toggle("selected", li.dataset.class === name);
  await loadTable();
}

// ---------------------------------------------------------------- the table

function queryParams() {
  return { class: state.cls, query: state.query, args: state.args, sort: state.sort, desc: state.desc ? "1" : "0" };
}

function showQueryError(err) {
  const box = $("query-error");
  if (!err) { box.hidden = true; return; }
  box.hidden = false;
  const pos = err.data && err.data.position;
  box.textContent = pos === undefined || pos === null ? err.message
    : `${err.message} at position ${pos}\n${state.query}\n${" ".repeat(pos)}^`;
  box.dataset.position = pos === undefined || pos === null ? "" : String(pos);
}

async function loadTable(fresh = new Set()) {
  if (!state.cls) return;
  let data;
  try {
    data = await api("api/objects", { ...queryParams(), offset: state.offset, limit: PAGE });
  } catch (err) { showQueryError(err); return; }
  showQueryError(null);
  state.total = data.total;
  const c = classInfo(state.cls);
  const head = el("tr", {});
  for (const p of c.properties) {
    const arrow = state.sort === p.name ? (state.desc ? " ▼" : " ▲") : "";
    head.append(el("th", { "data-prop": p.name, onclick: () => sortBy(p.name) }, p.name + arrow, " ", el("span", { class: "type" }, describe(p))));
  }
  $("table").tHead.replaceChildren(head);
  const body = $("table").tBodies[0];
  body.replaceChildren(...data.rows.map((row) => {
    const tr = el("tr", { "data-id": JSON.stringify(row.id), onclick: () => openDetail(state.cls, row.id) });
    if (fresh.has(JSON.stringify(row.id))) tr.classList.add("fresh");
    for (const p of c.properties) tr.append(el("td", { "data-prop": p.name }, renderValue(p, row.values[p.name])));
    return tr;
  }));
  const last = Math.min(state.total, state.offset + data.rows.length);
  $("summary").textContent = `${state.cls}: ${state.total} object${state.total === 1 ? "" : "s"}` + (state.query ? ` matching ${state.query}` : "");
  $("page").textContent = state.total ? `${state.offset + 1}–${last} of ${state.total}` : "none";
  $("prev").disabled = state.offset === 0;
  $("next").disabled = last >= state.total;
  return data;
}

function sortBy(name) {
  if (state.sort === name) state.desc = !state.desc; else { state.sort = name; state.desc = false; }
  state.offset = 0;
  loadTable();
}

// ---------------------------------------------------------------- one object

async function openDetail(cls, id) {
  state.detail = { cls, id };
  await loadDetail();
}

async function loadDetail() {
  if (!state.detail) return;
  const { cls, id } = state.detail;
  const aside = $("detail");
  aside.hidden = false;
  $("detail-title").textContent = `${cls} ${idText(id, cls)}`;
  let data;
  try {
    data = await api("api/object", { class: cls, id: JSON.stringify(id) });
  } catch (err) {
    $("detail-error").hidden = false; $("detail-error").textContent = err.message;
    $("detail-props").replaceChildren(); $("backlinks").replaceChildren();
    return;
  }
  $("detail-error").hidden = true;
  const c = classInfo(cls);
  const rows = c.properties.map((p) => {
    const cell = el("td", { class: "value", "data-prop": p.name }, renderValue(p, data.values[p.name], true));
    const tr = el("tr", {}, el("td", { class: "name" }, p.name, el("br"), el("span", { class: "type" }, describe(p))), cell);
    if (!state.info.read_only && !p.primary_key) {
      cell.append(el("button", { type: "button", class: "edit", "data-edit": p.name, onclick: () => editProp(cell, cls, id, p, data.values[p.name]) }, "edit"));
    }
    return tr;
  });
  $("detail-props").replaceChildren(...rows);
  $("backlinks").replaceChildren(...data.backlinks.map((b) => {
    const li = el("li", {}, `${b.class}.${b.property}: `);
    b.ids.forEach((bid, i) => {
      if (i) li.append(", ");
      li.append(el("span", { class: "link", onclick: () => openDetail(b.class, bid) }, idText(bid, b.class)));
    });
    if (b.total > b.ids.length) li.append(` … ${b.total} in all`);
    return li;
  }));
  if (!data.backlinks.length) $("backlinks").append(el("li", { class: "null" }, "none"));
}

function editProp(cell, cls, id, p, value) {
  const area = el("textarea", { rows: p.collection || p.type === "embedded" ? 6 : 2, "data-editor": p.name });
  area.value = editText(p, value);
  const error = el("div", { class: "error", hidden: "" });
  const save = el("button", { type: "button", "data-save": p.name, onclick: async () => {
    try {
      await api("api/update", {}, { class: cls, id, property: p.name, value: parseEdit(p, area.value) });
      await loadDetail();
    } catch (err) { error.hidden = false; error.textContent = err.message; }
  } }, "save");
  const cancel = el("button", { type: "button", onclick: () => loadDetail() }, "cancel");
  cell.replaceChildren(area, save, cancel, error);
  area.focus();
}

function addForm() {
  const c = classInfo(state.cls);
  state.detail = null;
  $("detail").hidden = false;
  $("detail-title").textContent = `new ${c.name}`;
  $("detail-error").hidden = true;
  $("backlinks").replaceChildren();
  const areas = {};
  const rows = c.properties.map((p) => {
    const area = el("textarea", { rows: 1, "data-new": p.name });
    area.value = editText(p, newValue(p));
    areas[p.name] = area;
    return el("tr", {}, el("td", { class: "name" }, p.name, el("br"), el("span", { class: "type" }, describe(p))), el("td", {}, area));
  });
  const create = el("button", { type: "button", id: "create", onclick: async () => {
    try {
      const values = {};
      for (const p of c.properties) values[p.name] = parseEdit(p, areas[p.name].value);
      const row = await api("api/add", {}, { class: c.name, values });
      await openDetail(c.name, row.id);
    } catch (err) { $("detail-error").hidden = false; $("detail-error").textContent = err.message; }
  } }, "create");
  rows.push(el("tr", {}, el("td", {}), el("td", {}, create)));
  $("detail-props").replaceChildren(...rows);
}

// ---------------------------------------------------------------- live updates

let pending = null;
function onChange(event) {
  const change = JSON.parse(event.data);
  $("version").textContent = `version ${change.version}`;
  if (pending) return; // coalesce a burst of commits into one refresh
  pending = setTimeout(async () => {
    pending = null;
    await loadInfo();
    await loadTable();
    await loadDetail();
  }, 50);
}

function connect() {
  const events = new EventSource(`api/events?token=${encodeURIComponent(TOKEN)}`);
  events.addEventListener("hello", () => { $("live").textContent = "live"; $("live").className = "badge on"; });
  events.addEventListener("change", onChange);
  events.onerror = () => { $("live").textContent = "reconnecting"; $("live").className = "badge off"; };
}

// ---------------------------------------------------------------- wiring

$("query-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.query = $("query").value.trim();
  const args = $("args").value.trim();
  state.args = args ? (args.startsWith("[") ? args : `[${args}]`) : "[]";
  state.offset = 0;
  loadTable();
});
$("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - PAGE); loadTable(); });
$("next").addEventListener("click", () => { state.offset += PAGE; loadTable(); });
$("close-detail").addEventListener("click", () => { state.detail = null; $("detail").hidden = true; });
$("add").addEventListener("click", addForm);
$("delete").addEventListener("click", async () => {
  if (!state.detail) return;
  try {
    await api("api/delete", {}, { class: state.detail.cls, id: state.detail.id });
    state.detail = null; $("detail").hidden = true;
  } catch (err) { $("detail-error").hidden = false; $("detail-error").textContent = err.message; }
});
for (const fmt of ["json", "csv"]) {
  $(`export-${fmt}`).addEventListener("click", () => {
    const url = new URL("api/export", window.location.href);
    for (const [k, v] of Object.entries({ ...queryParams(), format: fmt, token: TOKEN })) if (v !== null) url.searchParams.set(k, v);
    window.location.href = url.toString();
  });
}

loadInfo().then(connect);
