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
async function getMap(id, method, unit, mode, layer) {
  const r = await fetch(`data/maps/${id}/${encodeURIComponent(method)}/${unit}/${mode}/${layer}.f32`);
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
async function route() {
  const { parts, q } = parseHash();
  page().replaceChildren($("p", { text: "Loading…" }));
  try {
    if (!OVERVIEW) {
      OVERVIEW = await getJSON("data/overview.json");
      document.getElementById("store").textContent = OVERVIEW.store;
    }
    if (parts[0] === "examples") await examplesPage(q);
    else if (parts[0] === "example") await examplePage(Number(parts[1]), q);
    else if (parts[0] === "concordance") await concordancePage(q);
    else overviewPage();
  } catch (err) {
    page().replaceChildren($("p", { class: "error", text: String(err.message || err) }));
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
  if (!statics) kids.push(topForm(q));
  let data;
  if (q.get("top")) {
    data = await getJSON(`data/top.json?statistic=${encodeURIComponent(q.get("top"))}&method=${encodeURIComponent(q.get("method"))}&layer=${q.get("layer")}&k=${q.get("k") || 20}`);
    data = { total: data.rows.length, offset: 0, rows: data.rows };
  } else if (statics) {
    data = filterLocally(await getJSON("data/examples.json"), q);
  } else {
    data = await getJSON(`data/examples.json?${q.toString()}`);
  }
  const sortBy = (col) => () => { const n = new URLSearchParams(q); n.set("desc", n.get("sort") === col && n.get("desc") !== "1" ? "1" : "0"); n.set("sort", col); n.delete("offset"); go(["examples"], n); };
  const cols = data.rows.length && "value" in data.rows[0] ? ["example_id", "value", "length", "text"] : ["example_id", "length", "status", "text"];
  const head = $("tr", {}, ...cols.map((c) => (c === "example_id" || c === "length") && !q.get("top") ? $("th", { class: "sort", text: c, onclick: sortBy(c) }) : $("th", { text: c })));
  const rows = data.rows.map((r) => $("tr", {}, ...cols.map((c) => c === "example_id"
    ? $("td", { class: "num" }, $("a", { href: `#/example/${r.example_id}`, text: String(r.example_id) }))
    : $("td", { class: typeof r[c] === "number" ? "num" : "", text: r[c] === null ? "" : typeof r[c] === "number" && !Number.isInteger(r[c]) ? r[c].toFixed(4) : String(r[c]) }))));
  const offset = Number(q.get("offset") || 0), limit = 50;
  const pager = (delta, text) => $("button", { text, onclick: () => { const n = new URLSearchParams(q); n.set("offset", Math.max(0, offset + delta)); go(["examples"], n); } });
  kids.push($("p", { class: "muted", id: "count", text: `${data.total} examples` }), $("table", { id: "examples" }, head, ...rows));
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

function topForm(q) {
  const o = OVERVIEW;
  const sel = (name, values, value) => $("select", { name }, ...values.map((v) => { const op = $("option", { value: v, text: v }); if (String(v) === String(value)) op.selected = true; return op; }));
  const form = $("form", { class: "controls", id: "top", onsubmit: (e) => {
    e.preventDefault();
    const n = new URLSearchParams();
    for (const el of form.elements) if (el.name) n.set(el.name, el.value);
    go(["examples"], n);
  } }, $("span", { text: "top examples by" }),
  sel("top", ["self_mass", "context_mass", "special_mass"], q.get("top")),
  sel("method", o.methods, q.get("method")), $("span", { text: "layer" }), sel("layer", o.layers, q.get("layer")),
  $("label", { text: "k " }, $("input", { name: "k", size: 3, value: q.get("k") || 20 })), $("button", { text: "Rank" }));
  return form;
}

// ---- one example ---------------------------------------------------------------------------
// The view's state, all of it in the URL: methods (m), layer (l), unit, mode, hide, scale, diff, topk.
function exampleState(q, ex) {
  const methods = (q.get("m") || ex.methods[0]).split(",").filter((m) => ex.methods.includes(m));
  const layer = ex.layers.includes(Number(q.get("l"))) ? Number(q.get("l")) : ex.layers[ex.layers.length - 1];
  return {
    methods: methods.length ? methods : [ex.methods[0]], layer,
    unit: q.get("unit") === "word" ? "word" : "token", mode: q.get("mode") === "rollout" ? "rollout" : "layer",
    hide: q.get("hide") === "1", scale: q.get("scale") === "global" ? "global" : "row",
    diff: q.get("diff") === "1", topk: Number(q.get("topk") || 0), hover: q.get("hover") === "source" ? "source" : "target",
  };
}
function stateQuery(s) {
  const q = new URLSearchParams({ m: s.methods.join(","), l: s.layer, unit: s.unit, mode: s.mode, scale: s.scale, hover: s.hover });
  if (s.hide) q.set("hide", "1");
  if (s.diff) q.set("diff", "1");
  if (s.topk) q.set("topk", s.topk);
  return q;
}

// Keep the kept units' rows and columns; with specials hidden, rows are renormalised to sum to 1.
function viewMatrix(raw, n, keep, renorm) {
  const k = keep.length, out = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    let sum = 0;
    for (let j = 0; j < k; j++) { const v = raw[keep[i] * n + keep[j]]; out[i * k + j] = Number.isFinite(v) ? v : 0; sum += out[i * k + j]; }
    if (renorm && sum > 0) for (let j = 0; j < k; j++) out[i * k + j] /= sum;
  }
  return out;
}
function topkRows(m, k, top) {
  if (!top || top >= k) return m;
  const out = new Float64Array(m.length);
  for (let i = 0; i < k; i++) {
    const row = Array.from(m.subarray(i * k, i * k + k), (v, j) => [v, j]).sort((a, b) => b[0] - a[0]);
    for (const [v, j] of row.slice(0, top)) out[i * k + j] = v;
  }
  return out;
}
function colour(v, max, diverging) {
  const t = Math.max(-1, Math.min(1, max > 0 ? v / max : 0));
  if (diverging) return t >= 0 ? [255, 255 * (1 - t), 255 * (1 - t)] : [255 * (1 + t), 255 * (1 + t), 255];
  return [255 - 225 * t, 255 - 160 * t, 255 - 60 * t];  // white to a deep blue
}
function scaleOf(m, k, i, scale, diverging) {
  let max = 0;
  const [a, b] = scale === "row" && i !== null ? [i * k, i * k + k] : [0, m.length];
  for (let x = a; x < b; x++) max = Math.max(max, diverging ? Math.abs(m[x]) : m[x]);
  return max;
}

async function examplePage(id, q) {
  const ex = await getJSON(`data/example/${id}.json`);
  const s = exampleState(q, ex);
  const labels = s.unit === "word" ? ex.words : ex.tokens;
  const special = s.unit === "word" ? ex.word_special : ex.special;
  const n = labels.length;
  const keep = [...Array(n).keys()].filter((i) => !(s.hide && special[i]));
  const k = keep.length;
  const raws = await Promise.all(s.methods.map((m) => getMap(id, m, s.unit, s.mode, s.layer)));
  let panels = s.methods.map((m, t) => ({ name: m, m: topkRows(viewMatrix(raws[t], n, keep, s.hide), k, s.topk), diverging: false }));
  if (s.diff && panels.length >= 2) {
    const d = panels[0].m.map((v, x) => v - panels[1].m[x]);
    panels = [{ name: `${s.methods[0]} − ${s.methods[1]}`, m: d, diverging: true }];
  }
  const set = (patch) => go(["example", String(id)], stateQuery({ ...s, ...patch }));
  const box = (label, key, checked) => $("label", {}, Object.assign($("input", { type: "checkbox", id: key, onchange: (e) => set({ [key]: e.target.checked }) }), { checked }), label);
  const select = (key, values, value) => { const el = $("select", { id: key, onchange: (e) => set({ [key]: e.target.value }) }, ...values.map((v) => $("option", { value: v, text: v }))); el.value = value; return el; };
  const li = ex.layers.indexOf(s.layer);
  const slider = $("input", { type: "range", id: "layer", min: 0, max: ex.layers.length - 1, value: li, oninput: (e) => set({ layer: ex.layers[Number(e.target.value)] }) });
  const methodBoxes = ex.methods.map((m) => $("label", {}, Object.assign($("input", { type: "checkbox", class: "method", value: m, onchange: (e) => {
    const chosen = ex.methods.filter((x) => (x === m ? e.target.checked : s.methods.includes(x)));
    if (chosen.length) set({ methods: chosen });
  } }), { checked: s.methods.includes(m) }), m));
  const controls = $("div", { class: "controls" },
    $("label", { text: `layer ${s.layer} ` }, slider), ...methodBoxes,
    $("label", { text: "units " }, select("unit", ["token", "word"], s.unit)),
    $("label", { text: "maps " }, select("mode", ["layer", "rollout"], s.mode)),
    $("label", { text: "colour scale " }, select("scale", ["row", "global"], s.scale)),
    $("label", { text: "hover " }, select("hover", ["target", "source"], s.hover)),
    box(" hide special tokens", "hide", s.hide), box(" difference of two", "diff", s.diff),
    $("label", { text: "top-k per row " }, $("input", { id: "topk", size: 3, value: s.topk || "", onchange: (e) => set({ topk: Number(e.target.value) || 0 }) })));
  const exports = $("div", { class: "controls" },
    $("button", { id: "png", text: "PNG", onclick: () => download(`example-${id}.png`, canvases[0].toDataURL("image/png")) }),
    $("button", { id: "svg", text: "SVG", onclick: () => download(`example-${id}.svg`, svgURL(panels[0], keep.map((i) => labels[i]))) }),
    $("button", { id: "csv", text: "CSV", onclick: () => download(`example-${id}.csv`, csvURL(panels, keep.map((i) => labels[i]))) }),
    $("button", { id: "python", text: "copy Python", onclick: () => { const t = pythonLines(id, s); py.textContent = t; py.hidden = false; navigator.clipboard?.writeText(t).catch(() => {}); } }),
    $("a", { href: `#/example/${id - 1}?${stateQuery(s)}`, text: "← previous (p)" }), $("a", { href: `#/example/${id + 1}?${stateQuery(s)}`, text: "next (n) →" }));
  const py = $("pre", { id: "python-lines", hidden: "" });
  const spans = keep.map((i) => $("span", { class: "tok" + (special[i] ? " special" : ""), text: labels[i], "data-index": i }));
  const sentence = $("div", { class: "sentence", id: "sentence" }, ...spans.flatMap((sp) => [sp, " "]));
  const recolour = (i, axis) => {  // recolour the sentence by row i (target) or column i (source) of the first panel
    const p = panels[0];
    const values = [...Array(k).keys()].map((j) => (axis === "source" ? p.m[j * k + i] : p.m[i * k + j]));
    const max = Math.max(...values.map(Math.abs)) || 1;
    spans.forEach((sp, j) => {
      const [r, g, b] = colour(values[j], s.scale === "row" ? max : scaleOf(p.m, k, null, "global", p.diverging), p.diverging);
      sp.style.background = `rgb(${r | 0},${g | 0},${b | 0})`;
      sp.dataset.value = String(values[j]);
      sp.classList.toggle("focus", j === i);
    });
  };
  spans.forEach((sp, i) => sp.addEventListener("mouseenter", () => recolour(i, s.hover)));
  const canvases = [];
  const grid = $("div", { class: "row" }, ...panels.map((p) => {
    const c = drawHeatmap(p, k, keep.map((i) => labels[i]), s.scale, (i, j, v, e) => {
      if (i === null) { tip.hidden = true; return; }
      recolour(s.hover === "source" ? j : i, s.hover);
      tip.hidden = false; tip.style.left = `${e.clientX + 12}px`; tip.style.top = `${e.clientY + 12}px`;
      tip.textContent = `${labels[keep[i]]} ← ${labels[keep[j]]}: ${v.toFixed(4)}`;
    });
    canvases.push(c);
    return $("div", { class: "card panel" }, $("h3", { text: p.name }), c);
  }));
  const tip = document.getElementById("tip");
  const title = $("h2", { text: `Example ${id}` + (ex.truncated ? " (truncated)" : "") });
  page().replaceChildren(title, $("p", { class: "muted", text: ex.text || "" }), controls, exports, py,
    $("p", { class: "muted", text: `Hover a token: the sentence shows what it ${s.hover === "target" ? "receives (its row)" : "gives (its column)"}. Keys: ←/→ layer, n/p example.` }),
    sentence, grid);
  page().dataset.ready = `${id}:${s.methods.join(",")}:${s.layer}:${s.unit}:${s.mode}`;
  keyHandler = (e) => {
    if (e.target.tagName === "INPUT" && e.target.type !== "range" && e.target.type !== "checkbox") return;
    if (e.key === "ArrowRight" && li + 1 < ex.layers.length) set({ layer: ex.layers[li + 1] });
    else if (e.key === "ArrowLeft" && li > 0) set({ layer: ex.layers[li - 1] });
    else if (e.key === "n") go(["example", String(id + 1)], stateQuery(s));
    else if (e.key === "p" && id > 0) go(["example", String(id - 1)], stateQuery(s));
    else return;
    e.preventDefault();
  };
}
let keyHandler = null;
document.addEventListener("keydown", (e) => { if (keyHandler && parseHash().parts[0] === "example") keyHandler(e); });

function drawHeatmap(p, k, labels, scale, onHover) {
  const cell = Math.max(1, Math.min(22, Math.floor(560 / k)));
  const margin = cell >= 8 ? 90 : 0;  // room for labels only when they can be read
  const c = $("canvas", { width: margin + k * cell, height: margin + k * cell, class: "heatmap" });
  const g = c.getContext("2d");
  const img = new ImageData(k, k);
  const gmax = scaleOf(p.m, k, null, "global", p.diverging);
  for (let i = 0; i < k; i++) {
    const max = scale === "row" ? scaleOf(p.m, k, i, "row", p.diverging) : gmax;
    for (let j = 0; j < k; j++) {
      const [r, gg, b] = colour(p.m[i * k + j], max, p.diverging);
      img.data.set([r, gg, b, 255], (i * k + j) * 4);
    }
  }
  const off = new OffscreenCanvas(k, k);
  off.getContext("2d").putImageData(img, 0, 0);
  g.imageSmoothingEnabled = false;
  g.drawImage(off, margin, margin, k * cell, k * cell);
  if (margin) {
    g.fillStyle = "#333"; g.font = `${Math.min(11, cell)}px sans-serif`; g.textAlign = "right"; g.textBaseline = "middle";
    labels.forEach((t, i) => g.fillText(t.slice(0, 14), margin - 3, margin + (i + 0.5) * cell));
    g.save(); g.rotate(-Math.PI / 2); g.textAlign = "left";  // rotated: x runs up the canvas, y across it
    labels.forEach((t, j) => g.fillText(t.slice(0, 14), -(margin - 3), margin + (j + 0.5) * cell));
    g.restore();
  }
  c.addEventListener("mousemove", (e) => {
    const rect = c.getBoundingClientRect();
    const j = Math.floor((e.clientX - rect.left - margin) / cell), i = Math.floor((e.clientY - rect.top - margin) / cell);
    if (i < 0 || j < 0 || i >= k || j >= k) return onHover(null);
    onHover(i, j, p.m[i * k + j], e);
  });
  c.addEventListener("mouseleave", () => onHover(null));
  return c;
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

// ---- exports -------------------------------------------------------------------------------
function download(name, url) {
  const a = $("a", { href: url, download: name });
  document.body.append(a); a.click(); a.remove();
}
const csvCell = (t) => /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
function csvText(panels, labels) {
  const k = labels.length;
  const lines = [["panel", "target", ...labels.map((l, j) => `${j}:${l}`)].map(csvCell).join(",")];
  for (const p of panels) for (let i = 0; i < k; i++) lines.push([p.name, `${i}:${labels[i]}`].map(csvCell).concat(Array.from(p.m.subarray(i * k, i * k + k), String)).join(","));
  return lines.join("\n") + "\n";
}
const csvURL = (panels, labels) => URL.createObjectURL(new Blob([csvText(panels, labels)], { type: "text/csv" }));
function svgURL(p, labels) {
  const k = labels.length, cell = 12, m = 90, ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("xmlns", ns); svg.setAttribute("width", m + k * cell); svg.setAttribute("height", m + k * cell);
  const gmax = scaleOf(p.m, k, null, "global", p.diverging);
  for (let i = 0; i < k; i++) for (let j = 0; j < k; j++) {
    const r = document.createElementNS(ns, "rect"), [a, b, c] = colour(p.m[i * k + j], gmax, p.diverging);
    for (const [key, v] of [["x", m + j * cell], ["y", m + i * cell], ["width", cell], ["height", cell], ["fill", `rgb(${a | 0},${b | 0},${c | 0})`]]) r.setAttribute(key, v);
    svg.append(r);
  }
  labels.forEach((t, i) => {
    for (const [x, y, rot] of [[m - 3, m + (i + 0.7) * cell, ""], [m + (i + 0.7) * cell, m - 3, "rotate(-90)"]]) {
      const el = document.createElementNS(ns, "text");
      el.textContent = t;  // escaped by the serializer: a token is never markup
      el.setAttribute("font-size", "9"); el.setAttribute("text-anchor", "end");
      if (rot) el.setAttribute("transform", `translate(${x},${y}) ${rot}`); else { el.setAttribute("x", x); el.setAttribute("y", y); }
      svg.append(el);
    }
  });
  return URL.createObjectURL(new Blob([new XMLSerializer().serializeToString(svg)], { type: "image/svg+xml" }));
}
function pythonLines(id, s) {
  const store = JSON.stringify(OVERVIEW.store), li = OVERVIEW.layers.indexOf(s.layer);
  const lines = ["import vzcore", "", `store = vzcore.open_store(${store})`,
    `result = store.example(${id}, methods=${JSON.stringify(s.methods)})`];
  if (s.unit === "word") lines.push("result = result.word_level()  # words: sum over a source word's tokens, mean over a target's");
  const maps = s.methods.map((m) => `result.scores[${JSON.stringify(m)}]`);
  if (s.mode === "rollout") {
    lines.push("import torch", "from vzcore.ops.rollout import rollout");
    s.methods.forEach((m, t) => lines.push(`maps_${t} = rollout(torch.from_numpy(${maps[t]})).numpy()[${li}]  # layer ${s.layer}: [target, source]`));
  } else s.methods.forEach((m, t) => lines.push(`maps_${t} = ${maps[t]}[${li}]  # ${m}, layer ${s.layer}: [target, source]`));
  return lines.join("\n") + "\n";
}
