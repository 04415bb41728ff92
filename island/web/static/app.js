// The island's web page: datasets, their coverage and schema, SQL with paging and downloads,
// a live subscription, and the island's peers, rules and cache. Everything goes through the
// island's /api/v1 with the token given (kept in this browser's localStorage).
"use strict";

const $ = (sel) => document.querySelector(sel);
const PAGE_ROWS = 50;
let token = localStorage.getItem("archipel-token") || "";
let rows = [], columns = [], page = 0, subAbort = null, listing = 0;

function headers(extra) {
  const h = Object.assign({}, extra || {});
  if (token) h["Authorization"] = "Bearer " + token;
  return h;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(path, options) {
  const resp = await fetch(path, Object.assign({}, options, { headers: headers((options || {}).headers) }));
  if (!resp.ok) {
    let message = `${resp.status} ${resp.statusText}`;
    try { message = (await resp.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return resp;
}

async function json(path, options) {
  return (await api(path, options)).json();
}

function cell(tr, value, cls) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined ? "" : String(value);
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function fill(tbody, items, fn) {
  tbody.replaceChildren();
  for (const item of items) {
    const tr = document.createElement("tr");
    fn(tr, item);
    tbody.appendChild(tr);
  }
}

function humanBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

// -- datasets ---------------------------------------------------------------------------
async function loadDatasets() {
  const pattern = $("#pattern").value.trim();
  const mine = ++listing;  // an answer to an older call (another token, another filter) is dropped
  const data = await json("/api/v1/datasets" + (pattern ? "?pattern=" + encodeURIComponent(pattern) : ""));
  if (mine !== listing) return;
  fill($("#datasets tbody"), data.datasets, (tr, d) => {
    const a = document.createElement("a");
    a.href = "#" + d.name;
    a.textContent = d.name;
    a.onclick = (ev) => { ev.preventDefault(); showDataset(d.name).catch((e) => showError(e.message)); };
    cell(tr, "").appendChild(a);
    cell(tr, d.kind); cell(tr, d.origin); cell(tr, d.num_rows, "num"); cell(tr, humanBytes(d.num_bytes), "num");
    cell(tr, d.num_partitions, "num");
    cell(tr, d.ra_column ? `${(d.sky_fraction * 100).toPrecision(3)}%` : "-", "num");
    tr.dataset.name = d.name;
  });
}

async function showDataset(name) {
  const d = await json("/api/v1/datasets/" + encodeURIComponent(name));
  $("#detail").hidden = false;
  $("#detail-name").textContent = d.name;
  $("#detail-facts").textContent = `${d.kind}, ${d.num_rows} rows, ${humanBytes(d.num_bytes)} in ${d.num_partitions} ` +
    `partitions; origin ${d.origin}; owner ${d.owner || "-"}; readers ${d.readers.join(", ") || "(owner only)"}` +
    (d.public_after ? `; public from ${d.public_after}` : "");
  fill($("#held tbody"), Object.entries(d.held_by || {}), (tr, [island, n]) => {
    cell(tr, island + (island === d.origin ? " (origin)" : ""));
    cell(tr, `${n} / ${d.num_partitions}`, "num");
  });
  $("#hats-urls").textContent = d.hats_urls.length ? "HATS: " + d.hats_urls.join("  ") : "";
  fill($("#schema tbody"), d.schema, (tr, f) => { cell(tr, f.name); cell(tr, f.type); cell(tr, f.unit); cell(tr, f.ucd); });
  $("#query-this").onclick = () => {
    const where = d.ra_column ? ` WHERE cone(${d.ra_column}, ${d.dec_column}, 0, 0, 1)` : "";
    $("#sql").value = `SELECT * FROM ${d.name}${where}`;
    switchTab("query");
  };
  const canvas = $("#skymap");
  canvas.dataset.dataset = d.name;
  if (d.ra_column) {
    const cov = await json(`/api/v1/datasets/${encodeURIComponent(name)}/coverage`);
    SkyMap.draw(canvas, cov.cells, []);
    canvas.hidden = false;
  } else {
    canvas.hidden = true;
  }
}

// -- query -------------------------------------------------------------------------------
function conesOf(sql) {
  const out = [];
  const num = "([-+]?[0-9]*\\.?[0-9]+(?:[eE][-+]?[0-9]+)?)";
  const coneRe = new RegExp(`cone\\s*\\([^,()]+,[^,()]+,\\s*${num}\\s*,\\s*${num}\\s*,\\s*${num}\\s*\\)`, "gi");
  const circleRe = new RegExp(`circle\\s*\\(\\s*(?:'[^']*'\\s*,)?\\s*${num}\\s*,\\s*${num}\\s*,\\s*${num}\\s*\\)`, "gi");
  for (const re of [coneRe, circleRe]) {
    let m;
    while ((m = re.exec(sql)) !== null) out.push([+m[1], +m[2], +m[3]]);
  }
  return out;
}

function tablesOf(sql) {
  const out = [], re = /\b(?:from|join)\s+([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*){1,2})/gi;
  let m;
  while ((m = re.exec(sql)) !== null) out.push(m[1]);
  return out;
}

function renderPage() {
  const thead = $("#results thead"), tbody = $("#results tbody");
  thead.replaceChildren();
  const tr = document.createElement("tr");
  for (const c of columns) { const th = document.createElement("th"); th.textContent = c; tr.appendChild(th); }
  thead.appendChild(tr);
  const start = page * PAGE_ROWS, shown = rows.slice(start, start + PAGE_ROWS);
  fill(tbody, shown, (tr, r) => { for (const c of columns) cell(tr, r[c]); });
  const pages = Math.max(1, Math.ceil(rows.length / PAGE_ROWS));
  $("#page").textContent = rows.length ? `rows ${start + 1}–${start + shown.length} of ${rows.length} · page ${page + 1}/${pages}` : "no rows";
  $("#prev").disabled = page === 0;
  $("#next").disabled = page >= pages - 1;
}

async function runQuery() {
  const sql = $("#sql").value;
  $("#status").textContent = "running…";
  $("#plan").hidden = true;
  showError("");
  const started = performance.now();
  const body = JSON.stringify({ sql, route: $("#route").value, format: "json", limit: +$("#limit").value || 10000 });
  try {
    const resp = await api("/api/v1/query", { method: "POST", body, headers: { "Content-Type": "application/json" } });
    const text = await resp.text();
    rows = [];
    for (const line of text.split("\n")) {
      if (!line) continue;
      const obj = JSON.parse(line);
      if (obj && obj.error && Object.keys(obj).length === 1) throw new Error(obj.error.message);
      rows.push(obj);
    }
    columns = rows.length ? Object.keys(rows[0]) : [];
    page = 0;
    renderPage();
    $("#status").textContent = `${rows.length} rows in ${((performance.now() - started) / 1000).toFixed(2)} s`;
  } catch (e) {
    $("#status").textContent = "failed";
    showError(e.message);
  }
  const cones = conesOf(sql), canvas = $("#querymap");
  if (cones.length) {
    let cells = [];
    const t = tablesOf(sql)[0];
    if (t) {
      try { cells = (await json(`/api/v1/datasets/${encodeURIComponent(t)}/coverage`)).cells; } catch (e) { /* not a sky dataset */ }
    }
    canvas.hidden = false;
    SkyMap.draw(canvas, cells, cones);
  } else {
    canvas.hidden = true;
  }
}

async function explainQuery() {
  try {
    const plan = await json("/api/v1/explain", { method: "POST", headers: { "Content-Type": "application/json" },
                                                 body: JSON.stringify({ sql: $("#sql").value, route: $("#route").value }) });
    $("#plan").textContent = plan.text;
    $("#plan").hidden = false;
    showError("");
  } catch (e) { showError(e.message); }
}

async function download(format) {
  try {
    const resp = await api("/api/v1/query", { method: "POST", headers: { "Content-Type": "application/json" },
                                              body: JSON.stringify({ sql: $("#sql").value, route: $("#route").value, format }) });
    const blob = await resp.blob();
    const a = document.createElement("a");
    const name = (resp.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    a.href = URL.createObjectURL(blob);
    a.download = name ? name[1] : "result";
    document.body.appendChild(a);
    a.click();
    setTimeout(() => { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    $("#status").textContent = `downloaded ${humanBytes(blob.size)} as ${format}`;
  } catch (e) { showError(e.message); }
}

// -- live --------------------------------------------------------------------------------
async function subscribe() {
  const pattern = $("#sub-pattern").value.trim();
  if (!pattern) { showError("name a dataset pattern to subscribe to"); return; }
  const q = new URLSearchParams({ dataset: pattern, mode: $("#sub-mode").value });
  if ($("#sub-where").value.trim()) q.set("where", $("#sub-where").value.trim());
  subAbort = new AbortController();
  $("#sub-start").disabled = true;
  $("#sub-stop").disabled = false;
  const list = $("#sub-events");
  try {
    const resp = await api("/api/v1/subscribe?" + q, { signal: subAbort.signal });
    const reader = resp.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        if (!data) continue;
        const msg = JSON.parse(data);
        if (event === "started") { $("#sub-status").textContent = `subscribed to ${msg.dataset_pattern} at ${msg.island}`; continue; }
        if (event === "error") { showError(msg.message); continue; }
        const li = document.createElement("li");
        const when = new Date(msg.timestamp * 1000).toISOString().replace("T", " ").slice(0, 19);
        li.textContent = event === "rows"
          ? `${when} ${msg.dataset} (${msg.island}): ${msg.rows.length} rows ${JSON.stringify(msg.rows.slice(0, 3))}`
          : `${when} ${msg.dataset} (${msg.island}) ${msg.op}: ${msg.rows} rows in ${msg.partitions.length} partitions`;
        li.dataset.dataset = msg.dataset;
        list.prepend(li);
      }
    }
  } catch (e) {
    if (e.name !== "AbortError") showError(e.message);
  } finally {
    $("#sub-start").disabled = false;
    $("#sub-stop").disabled = true;
  }
}

// -- island ------------------------------------------------------------------------------
async function loadIsland() {
  const info = await json("/api/v1/island");
  const keys = ["name", "version", "grpc_address", "peer_address", "http_url", "root_url", "datasets", "catalog_sequence",
                "running_queries", "spark_ready", "spark_master", "anonymous"];
  fill($("#info tbody"), keys, (tr, k) => { cell(tr, k); cell(tr, info[k]); });
  const peers = await json("/api/v1/peers");
  fill($("#peers tbody"), peers.peers, (tr, p) => { cell(tr, p.island); cell(tr, p.address); cell(tr, p.state); cell(tr, p.last_seq, "num"); cell(tr, p.error); });
  try {
    const rules = await json("/api/v1/rules");
    fill($("#rules tbody"), rules.rules, (tr, r) => {
      cell(tr, r.id); cell(tr, r.dataset); cell(tr, r.region); cell(tr, r.state);
      cell(tr, `${r.files_done}/${r.files_total}`, "num"); cell(tr, humanBytes(r.bytes_done), "num"); cell(tr, r.owner);
    });
    const c = await json("/api/v1/cache");
    const items = [["quota", humanBytes(c.quota_bytes)], ["used", humanBytes(c.used_bytes)], ["pinned", humanBytes(c.pinned_bytes)],
                   ["cached", humanBytes(c.cached_bytes)], ["files", c.files],
                   ...Object.entries(c.datasets).map(([d, [f, b]]) => [d, `${f} files, ${humanBytes(b)}`])];
    fill($("#cache tbody"), items, (tr, [k, v]) => { cell(tr, k); cell(tr, v); });
  } catch (e) { showError(e.message); }
}

// -- wiring -------------------------------------------------------------------------------
function switchTab(name) {
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll(".tab")) s.hidden = s.id !== "tab-" + name;
  if (name === "island") loadIsland().catch((e) => showError(e.message));
}

let starting = 0;

async function start() {
  $("#token").value = token;
  $("#tap-url").textContent = location.origin + "/tap";
  const mine = ++starting;
  try {
    const who = await json("/api/v1/whoami");
    if (mine !== starting) return;  // the token changed meanwhile
    $("#whoami").textContent = who.anonymous ? "anonymous" : `${who.user}${who.admin ? " (admin)" : ""}`;
    $("#island-name").textContent = "· island " + who.island;
    document.title = `Archipel · ${who.island}`;
    $("#datasets").dataset.caller = who.anonymous ? "anonymous" : who.user;
    await loadDatasets();
    showError("");
  } catch (e) { showError(e.message); }
}

$("#login").onsubmit = (ev) => {
  ev.preventDefault();
  token = $("#token").value.trim();
  localStorage.setItem("archipel-token", token);
  start();
};
for (const b of document.querySelectorAll("nav button")) b.onclick = () => switchTab(b.dataset.tab);
for (const b of document.querySelectorAll("#downloads button")) b.onclick = () => download(b.dataset.format);
$("#pattern").oninput = () => loadDatasets().catch((e) => showError(e.message));
$("#run").onclick = runQuery;
$("#explain").onclick = explainQuery;
$("#prev").onclick = () => { page = Math.max(0, page - 1); renderPage(); };
$("#next").onclick = () => { page += 1; renderPage(); };
$("#sub-start").onclick = subscribe;
$("#sub-stop").onclick = () => { if (subAbort) subAbort.abort(); };
start();
