// vz view: the pages of a store, drawn from the small JSON and float32 files the server (or a
// static build) serves. No library: the DOM for text (always textContent, never markup built
// from store content) and the canvas for maps (one pixel per cell, scaled: fast at n = 512).
"use strict";

const $ = (tag, attrs = {}, ...kids) => {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "text") el.textContent = v;
    else if (k === "color") el.style.color = v;  // through the CSSOM: the CSP refuses style attributes
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const kid of kids) el.append(kid);
  return el;
};
const page = () => document.getElementById("page");
let OVERVIEW = null;

async function getJSON(path) {
  const r = await fetch(path);
  if (!r.ok) throw new Error(`${path}: ${r.status} ${(await r.text()).trim()}`);
  return r.json();
}
// A static site (`vz view --build`) reads examples and maps from the store itself (storesite.js).
async function getExample(id, where = "") {
  if (OVERVIEW.mode === "static" && !where) {
    // The store keeps texts in Parquet tables, which the page does not read: the site's examples
    // table holds those of the examples it lists (the first characters of each).
    STATIC_TABLE = STATIC_TABLE || getJSON("data/examples.json").catch(() => ({ rows: [] }));
    const [ex, table] = await Promise.all([siteExample(id), STATIC_TABLE]);
    return { ...ex, text: table.rows.find((r) => r.example_id === id)?.text ?? null };
  }
  const early = !where && EARLY_EXAMPLE && EARLY_EXAMPLE.id === id ? EARLY_EXAMPLE.fetch : null;
  EARLY_EXAMPLE = null;  // used once: a later visit asks again
  return early || getJSON(`data/${where}example/${id}.json`);
}
async function getMap(id, method, unit, mode, layer, where = "") {
  if (OVERVIEW.mode === "static" && !where) return siteMap(id, method, unit, mode, layer);
  const r = await fetch(`data/${where}maps/${id}/${encodeURIComponent(method)}/${unit}/${mode}/${layer}.f32`);
  if (!r.ok) throw new Error(`map ${method} layer ${layer}: ${r.status}`);
  return new Float32Array(await r.arrayBuffer());
}

// ---- routing: every state is in the URL's hash, so a view can be shared --------------------
function parseHash() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  return { parts: (path || "/").split("/").filter(Boolean), q: new URLSearchParams(query || "") };
}
function go(parts, q) {
  const s = q.toString();
  location.hash = "#/" + parts.join("/") + (s ? "?" + s : "");
}
// One state is drawn at a time, in order, and a state the URL has already left is skipped: a slow
// page of an earlier state can never paint over a later one.
let ROUTING = Promise.resolve();
function route() {
  const wanted = location.hash;
  ROUTING = ROUTING.then(() => (location.hash === wanted ? draw() : undefined));
  return ROUTING;
}
async function draw() {
  const { parts, q } = parseHash();
  const drawing = location.hash;
  delete document.body.dataset.drawn;
  performance.mark("vz-route");
  page().replaceChildren($("p", { text: "Loading…" }));
  try {
    if (!OVERVIEW) {
      OVERVIEW = await OVERVIEW_FETCH;
      const where = OVERVIEW.mode === "static" ? `${OVERVIEW.store_url} (a static site)` : OVERVIEW.store;  // where this page reads
      document.getElementById("store").textContent = where + (OVERVIEW.compare ? `  vs  ${OVERVIEW.compare}` : "");
      // Only the pages this store can fill are linked.
      if (OVERVIEW.evaluations) document.querySelector("nav").append(" ", $("a", { href: "#/evaluation", text: "Evaluation" }));
      if (OVERVIEW.compare) document.querySelector("nav").append(" ", $("a", { href: "#/compare", text: "Compare" }));
    }
    if (parts[0] === "examples") await examplesPage(q);
    else if (parts[0] === "example") await examplePage(Number(parts[1]), q);
    else if (parts[0] === "concordance") await concordancePage(q);
    else if (parts[0] === "evaluation") await evaluationPage();
    else if (parts[0] === "compare") await comparePage(q);
    else overviewPage();
    // The bench (bench/view.py) reads these marks: the page is drawn once the next frame starts.
    requestAnimationFrame(() => performance.mark("vz-rendered"));
  } catch (err) {
    page().replaceChildren($("p", { class: "error", text: String(err.message || err) }));
  }
  // Says which state the page shows (an earlier state's page stays until this one replaces it).
  if (location.hash === drawing) document.body.dataset.drawn = drawing;
}
// Asked for as soon as this script runs, not when the document is ready: every page needs it first.
const OVERVIEW_FETCH = getJSON("data/overview.json");
OVERVIEW_FETCH.catch(() => {});  // reported by the first route
// A link to an example: its tokens are asked for now too, beside the overview (the live server reads
// the example, with its first method's maps, while the app starts). A static site reads the store
// itself (storesite.js starts its own reads).
let EARLY_EXAMPLE = null, STATIC_TABLE = null, STATIC_TOP = null;
if (!document.querySelector('meta[name="vz-store"]')) {
  const linked = /^#\/example\/(\d+)/.exec(location.hash);
  if (linked) {
    EARLY_EXAMPLE = { id: Number(linked[1]), fetch: getJSON(`data/example/${linked[1]}.json`) };
    EARLY_EXAMPLE.fetch.catch(() => {});  // reported by the page, which awaits it
  }
}
window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);

// ---- overview ------------------------------------------------------------------------------
function overviewPage() {
  const o = OVERVIEW;
  const facts = [
    ["model", `${o.model} (${o.model_type}, ${o.causal ? "causal" : "encoder"})`],
    ["methods", o.methods.join(", ")],
    ["layers", `${o.layers.join(", ")} of ${o.model_num_layers}`],
    ["examples", `${o.examples} in ${o.parts} parts; ${o.parts_done} done`],
    ["layout", `v${o.layout}`],
  ];
  const table = $("table", { id: "facts" }, ...facts.map(([k, v]) => $("tr", {}, $("th", { text: k }), $("td", { text: v }))));
  const prov = $("div", { class: "card" }, $("h3", { text: "Provenance" }),
    $("pre", { text: JSON.stringify({ config: o.config, versions: o.versions, identity: o.identity }, null, 1) }));
  const kids = [$("h2", { text: "Overview" }), $("div", { class: "row" }, $("div", { class: "card" }, table), prov)];
  const agg = o.aggregate;
  if (!agg || !agg.layers.length) {
    kids.push($("p", { class: "muted", text: "No aggregate: run `vz aggregate STORE` and pass --aggregate to see corpus curves." }));
  } else {
    const curves = $("div", { class: "row", id: "curves" });
    for (const [stat, title] of [["self_mass", "self share"], ["context_mass", "context share"],
      ["special_mass", "special-token mass"], ["entropy", "row entropy (normalised)"]]) {
      curves.append(lineChart(title, o.methods.map((m) => ({
        name: m, points: agg.layers.filter((r) => r.method === m).map((r) => [r.layer, r[stat]]) }))));
    }
    const last = o.layers[o.layers.length - 1];
    curves.append(lineChart(`distance profile (layer ${last}): mass by offset j - i`, o.methods.map((m) => ({
      name: m, points: agg.distance.filter((r) => r.method === m && r.layer === last && !r.overflow).map((r) => [r.offset, r.mass]) }))));
    if (agg.agreement.length) {
      const pairs = [...new Set(agg.agreement.map((r) => `${r.method_a} / ${r.method_b}`))];
      curves.append(lineChart("agreement (Spearman per row)", pairs.map((p) => ({
        name: p, points: agg.agreement.filter((r) => `${r.method_a} / ${r.method_b}` === p).map((r) => [r.layer, r.spearman]) }))));
    }
    kids.push($("h2", { text: "Aggregate" }), curves);
  }
  page().replaceChildren(...kids);
}

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"];
function lineChart(title, series, w = 300, h = 180) {
  const c = $("canvas", { width: w, height: h, "data-title": title });
  const g = c.getContext("2d");
  const pts = series.flatMap((s) => s.points).filter((p) => p[1] !== null);
  const box = { l: 40, r: 8, t: 8, b: 22 };
  if (pts.length) {
    const [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
    const [y0, y1] = [Math.min(0, ...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1])) || 1];
    const X = (x) => box.l + ((x - x0) / (x1 - x0 || 1)) * (w - box.l - box.r);
    const Y = (y) => h - box.b - ((y - y0) / (y1 - y0 || 1)) * (h - box.t - box.b);
    g.strokeStyle = "#999"; g.strokeRect(box.l, box.t, w - box.l - box.r, h - box.t - box.b);
    g.fillStyle = "#555"; g.font = "10px sans-serif";
    g.fillText(y1.toFixed(2), 2, box.t + 8); g.fillText(y0.toFixed(2), 2, h - box.b);
    g.fillText(String(x0), box.l, h - 8); g.fillText(String(x1), w - box.r - 14, h - 8);
    series.forEach((s, k) => {
      g.strokeStyle = PALETTE[k % PALETTE.length]; g.lineWidth = 1.5; g.beginPath();
      s.points.filter((p) => p[1] !== null).forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
      g.stroke();
    });
  }
  const legend = $("div", { class: "muted" }, ...series.map((s, k) => $("span", { color: PALETTE[k % PALETTE.length], text: `■ ${s.name}  ` })));
  return $("div", { class: "card" }, $("h3", { text: title }), c, legend);
}

// ---- examples table ------------------------------------------------------------------------
async function examplesPage(q) {
  const statics = OVERVIEW.mode === "static";
  const form = $("form", { class: "controls", onsubmit: (e) => {
    e.preventDefault();
    const n = new URLSearchParams();
    for (const el of form.elements) if (el.name && el.value) n.set(el.name, el.value);
    go(["examples"], n);
  } },
  $("label", { text: "text " }, $("input", { name: "q", value: q.get("q") || "", id: "q" })),
  $("label", { text: "length ≥ " }, $("input", { name: "min_len", size: 4, value: q.get("min_len") || "" })),
  $("label", { text: "≤ " }, $("input", { name: "max_len", size: 4, value: q.get("max_len") || "" })),
  $("button", { text: "Filter" }));
  const kids = [$("h2", { text: "Examples" }), form];
  if (!statics || OVERVIEW.top) kids.push(topForm(q, statics ? ["top-k"] : ["top-k", "deciles"]));
  let data;
  if (q.get("top") && statics) {  // the aggregate's top examples, as the site carries them
    STATIC_TOP = STATIC_TOP || getJSON("data/top.json");
    const rows = (await STATIC_TOP)[`${q.get("top")}/${q.get("method")}/${q.get("layer")}`];
    if (!rows) throw new Error(`no top examples of ${q.get("top")}, ${q.get("method")}, layer ${q.get("layer")} in this site`);
    const k = Math.min(Number(q.get("k") || 20), OVERVIEW.top);
    data = { total: Math.min(k, rows.length), offset: 0, rows: rows.slice(0, k), source: "table" };
  } else if (q.get("top")) {
    const ask = `statistic=${encodeURIComponent(q.get("top"))}&method=${encodeURIComponent(q.get("method"))}&layer=${q.get("layer")}`;
    data = await getJSON(q.get("sample") === "deciles" ? `data/deciles.json?${ask}` : `data/top.json?${ask}&k=${q.get("k") || 20}`);
    data = { total: data.rows.length, offset: 0, rows: data.rows, scanned: data.scanned, source: data.source, parts: data.parts };
  } else if (statics) {
    data = filterLocally(await getJSON("data/examples.json"), q);
  } else {
    data = await getJSON(`data/examples.json?${q.toString()}`);
  }
  const sortBy = (col) => () => { const n = new URLSearchParams(q); n.set("desc", n.get("sort") === col && n.get("desc") !== "1" ? "1" : "0"); n.set("sort", col); n.delete("offset"); go(["examples"], n); };
  const cols = !data.rows.length || !("value" in data.rows[0]) ? ["example_id", "length", "status", "text"]
    : "decile" in data.rows[0] ? ["decile", "example_id", "value", "length", "text"] : ["example_id", "value", "length", "text"];
  const head = $("tr", {}, ...cols.map((c) => (c === "example_id" || c === "length") && !q.get("top") ? $("th", { class: "sort", text: c, onclick: sortBy(c) }) : $("th", { text: c })));
  const rows = data.rows.map((r) => $("tr", {}, ...cols.map((c) => c === "example_id"
    ? $("td", { class: "num" }, $("a", { href: `#/example/${r.example_id}`, text: String(r.example_id) }))
    : $("td", { class: typeof r[c] === "number" ? "num" : "", text: r[c] === null ? "" : typeof r[c] === "number" && !Number.isInteger(r[c]) ? r[c].toFixed(4) : String(r[c]) }))));
  const offset = Number(q.get("offset") || 0), limit = 50;
  const pager = (delta, text) => $("button", { text, onclick: () => { const n = new URLSearchParams(q); n.set("offset", Math.max(0, offset + delta)); go(["examples"], n); } });
  if (statics) kids.push($("p", { class: "muted", text: "A static site lists these examples; any example of the store opens at #/example/ID." }));
  const counted = data.scanned !== undefined ? `${data.total} examples drawn from the deciles of the first ${data.scanned} scored`
    : data.source === "table" ? `the ${data.total} highest, from the aggregate's per-example table (top_examples.parquet: no map read)`
    : data.source ? `the ${data.total} highest, streamed: every map of ${q.get("method")} at layer ${q.get("layer")} read, in ${data.parts} parts (no per-example table holds ${q.get("top")})`
    : `${data.total} examples`;
  kids.push($("p", { class: "muted", id: "count", text: counted }), $("table", { id: "examples" }, head, ...rows));
  if (!q.get("top")) kids.push($("div", { class: "controls" }, pager(-limit, "← previous"), pager(limit, "next →")));
  page().replaceChildren(...kids);
}

function filterLocally(all, q) {
  let rows = all.rows;
  const text = (q.get("q") || "").toLowerCase();
  if (text) rows = rows.filter((r) => (r.text || "").toLowerCase().includes(text));
  if (q.get("min_len")) rows = rows.filter((r) => r.length >= Number(q.get("min_len")));
  if (q.get("max_len")) rows = rows.filter((r) => r.length <= Number(q.get("max_len")));
  const col = q.get("sort") || "example_id", sign = q.get("desc") === "1" ? -1 : 1;
  rows = [...rows].sort((a, b) => sign * (a[col] - b[col]) || a.example_id - b.example_id);
  const offset = Number(q.get("offset") || 0);
  return { total: rows.length, offset, rows: rows.slice(offset, offset + 50) };
}

function topForm(q, samples) {
  const o = OVERVIEW;
  const sel = (name, values, value) => $("select", { name, id: `top-${name}` }, ...values.map((v) => { const op = $("option", { value: v, text: v }); if (String(v) === String(value)) op.selected = true; return op; }));
  const form = $("form", { class: "controls", id: "top", onsubmit: (e) => {
    e.preventDefault();
    const n = new URLSearchParams();
    for (const el of form.elements) if (el.name) n.set(el.name, el.value);
    go(["examples"], n);
  } }, sel("sample", samples, q.get("sample") || "top-k"), $("span", { text: "examples by" }),
  sel("top", ["self_mass", "context_mass", "special_mass"], q.get("top")),
  sel("method", o.methods, q.get("method")), $("span", { text: "layer" }), sel("layer", o.layers, q.get("layer")),
  $("label", { text: "k " }, $("input", { name: "k", size: 3, value: q.get("k") || 20 })), $("button", { text: "Rank" }));
  return form;
}

// ---- concordance: every occurrence of a word or token with the row it receives --------------
async function concordancePage(q) {
  const o = OVERVIEW, kind = q.get("token") !== null ? "token" : "word";
  const method = o.methods.includes(q.get("method")) ? q.get("method") : o.methods[0];
  const layer = o.layers.includes(Number(q.get("layer"))) ? Number(q.get("layer")) : o.layers[o.layers.length - 1];
  const sel = (name, values, value) => { const el = $("select", { name, id: `c-${name}` }, ...values.map((v) => $("option", { value: v, text: v }))); el.value = String(value); return el; };
  const form = $("form", { class: "controls", onsubmit: (e) => {
    e.preventDefault();
    const n = new URLSearchParams({ [form.elements.kind.value]: form.elements.query.value, method: form.elements.method.value, layer: form.elements.layer.value });
    go(["concordance"], n);
  } }, sel("kind", ["word", "token"], kind), $("input", { name: "query", id: "c-query", value: q.get(kind) || "" }),
  $("span", { text: "method" }), sel("method", o.methods, method), $("span", { text: "layer" }), sel("layer", o.layers, layer), $("button", { text: "Find" }));
  const kids = [$("h2", { text: "Concordance" }), form];
  if (o.mode === "static") kids.push($("p", { class: "muted", text: "A static site answers no corpus query: serve the store with `vz view STORE`." }));
  else if (q.get(kind)) {
    const c = await getJSON(`data/concordance.json?${kind}=${encodeURIComponent(q.get(kind))}&method=${encodeURIComponent(method)}&layer=${layer}`);
    kids.push($("p", { class: "muted", id: "c-count", text: `${c.count} occurrences of ${c.unit} “${c.query}” at layer ${c.layer} (${c.method}); the first ${c.occurrences.length} below` }));
    const types = $("table", { id: "by-type" }, $("tr", {}, $("th", { text: "source" }), $("th", { text: "mean weight" })),
      ...c.by_type.map(([t, v]) => $("tr", {}, $("td", { text: t }), $("td", { class: "num", text: v.toFixed(4) }))));
    kids.push($("div", { class: "row" }, lineChart("mean row by relative position (source − target)", [{ name: c.method, points: c.by_offset }]),
      $("div", { class: "card" }, $("h3", { text: "mean row by source type" }), types)));
    const rows = c.occurrences.map((occ) => {
      const max = Math.max(...occ.weights) || 1;
      const spans = occ.sources.map((t, j) => {
        const sp = $("span", { class: "tok" + (j === occ.position ? " focus" : ""), text: t });
        const [r, g, b] = colour(occ.weights[j], max, false);
        sp.style.background = `rgb(${r | 0},${g | 0},${b | 0})`; sp.dataset.value = String(occ.weights[j]);
        return sp;
      });
      const link = $("a", { href: `#/example/${occ.example_id}?m=${method}&l=${layer}&unit=${c.unit}`, text: String(occ.example_id) });
      return $("tr", {}, $("td", { class: "num" }, link), $("td", { class: "sentence" }, ...spans.flatMap((sp) => [sp, " "])));
    });
    kids.push($("table", { id: "occurrences" }, $("tr", {}, $("th", { text: "example" }), $("th", { text: "the row the occurrence (outlined) receives" })), ...rows));
  }
  page().replaceChildren(...kids);
}

