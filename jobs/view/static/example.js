// vz view, the example page: one example's maps as canvas heatmaps (one pixel per cell, scaled),
// the sentence recoloured by the hovered row or column, and the exports (PNG, SVG, CSV, Python).
// Uses the helpers of app.js, loaded before it.
"use strict";

// ---- one example ---------------------------------------------------------------------------
// The view's state, all of it in the URL: methods (m), layer (l), unit, mode, hide, scale, diff, topk.
function exampleState(q, store) {
  const methods = (q.get("m") || store.methods[0]).split(",").filter((m) => store.methods.includes(m));
  const layer = q.has("l") && store.layers.includes(Number(q.get("l"))) ? Number(q.get("l")) : store.layers[store.layers.length - 1];
  return {
    methods: methods.length ? methods : [store.methods[0]], layer,
    unit: q.get("unit") === "word" ? "word" : "token", mode: q.get("mode") === "rollout" ? "rollout" : "layer",
    hide: q.get("hide") === "1", scale: q.get("scale") === "global" ? "global" : "row",
    diff: q.get("diff") === "1", cmp: q.get("cmp") === "1" && Boolean(OVERVIEW.compare), topk: Number(q.get("topk") || 0), hover: q.get("hover") === "source" ? "source" : "target",
  };
}
function stateQuery(s) {
  const q = new URLSearchParams({ m: s.methods.join(","), l: s.layer, unit: s.unit, mode: s.mode, scale: s.scale, hover: s.hover });
  if (s.hide) q.set("hide", "1");
  if (s.diff) q.set("diff", "1");
  if (s.cmp) q.set("cmp", "1");
  if (s.topk) q.set("topk", s.topk);
  return q;
}

// Keep the kept units' rows and columns; with specials hidden, rows are renormalised to sum to 1.
// An unscored row (NaN) stays NaN: drawn grey, written NaN, never read as zeros.
function viewMatrix(raw, n, keep, renorm) {
  const k = keep.length, out = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    let sum = 0;
    for (let j = 0; j < k; j++) { const v = raw[keep[i] * n + keep[j]]; out[i * k + j] = v; if (Number.isFinite(v)) sum += v; }
    if (renorm && sum > 0) for (let j = 0; j < k; j++) out[i * k + j] /= sum;
  }
  return out;
}
function topkRows(m, k, top) {
  if (!top || top >= k) return m;
  const out = new Float64Array(m.length);
  for (let i = 0; i < k; i++) {
    const row = Array.from(m.subarray(i * k, i * k + k), (v, j) => [v, j]);
    if (row.some(([v]) => Number.isNaN(v))) { out.set(m.subarray(i * k, i * k + k), i * k); continue; }  // unscored
    row.sort((a, b) => b[0] - a[0]);
    for (const [v, j] of row.slice(0, top)) out[i * k + j] = v;
  }
  return out;
}
function colour(v, max, diverging) {
  if (!Number.isFinite(v)) return [225, 225, 225];  // not scored
  const t = Math.max(-1, Math.min(1, max > 0 ? v / max : 0));
  if (diverging) return t >= 0 ? [255, 255 * (1 - t), 255 * (1 - t)] : [255 * (1 + t), 255 * (1 + t), 255];
  return [255 - 225 * t, 255 - 160 * t, 255 - 60 * t];  // white to a deep blue
}
function scaleOf(m, k, i, scale, diverging) {
  let max = 0;
  const [a, b] = scale === "row" && i !== null ? [i * k, i * k + k] : [0, m.length];
  for (let x = a; x < b; x++) { const v = diverging ? Math.abs(m[x]) : m[x]; if (v > max) max = v; }  // NaN never wins
  return max;
}

async function examplePage(id, q) {
  // The maps are fetched with the tokens, not after them: the state needs only the store's methods and layers.
  const s = exampleState(q, OVERVIEW);
  const fetched = getExample(id);
  const sources = s.methods.flatMap((m) => (s.cmp ? [[m, "", "A: "], [m, "other/", "B: "]] : [[m, "", ""]]));
  const fetching = Promise.all(sources.map(([m, where]) => getMap(id, m, s.unit, s.mode, s.layer, where)));
  fetching.catch(() => {});  // reported below, after the tokens' own error if any
  const ex = await fetched;
  const labels = s.unit === "word" ? ex.words : ex.tokens;
  const special = s.unit === "word" ? ex.word_special : ex.special;
  const n = labels.length;
  const keep = [...Array(n).keys()].filter((i) => !(s.hide && special[i]));
  const k = keep.length;
  const raws = await fetching;  // with cmp, each method twice: this store's map, then the compared store's
  let panels = sources.map(([m, , tag], t) => ({ name: tag + m, m: topkRows(viewMatrix(raws[t], n, keep, s.hide), k, s.topk), diverging: false }));
  if (s.diff && panels.length >= 2) {
    const d = panels[0].m.map((v, x) => v - panels[1].m[x]);
    panels = [{ name: `${panels[0].name} − ${panels[1].name}`, m: d, diverging: true }];
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
    ...(OVERVIEW.compare ? [box(" beside the compared store", "cmp", s.cmp)] : []),
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
    const max = Math.max(0, ...values.filter(Number.isFinite).map(Math.abs)) || 1;
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
    for (let j = 0; j < k; j++) {  // byte by byte: a `set` of a fresh array per cell costs ten times more at n = 512
      const rgb = colour(p.m[i * k + j], max, p.diverging), at = (i * k + j) * 4;
      img.data[at] = rgb[0]; img.data[at + 1] = rgb[1]; img.data[at + 2] = rgb[2]; img.data[at + 3] = 255;
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

