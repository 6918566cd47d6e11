// vz view, pages across runs: the evaluation summaries of `vz evaluate` folders, and the
// comparison of two stores of the same texts. Uses the helpers of app.js, loaded before it.
"use strict";

function tableOf(id, rows, cols) {
  const fmt = (v) => (v === null || v === undefined ? "" : typeof v === "number" && !Number.isInteger(v) ? v.toFixed(4) : String(v));
  return $("table", { id }, $("tr", {}, ...cols.map((c) => $("th", { text: c }))),
    ...rows.map((r) => $("tr", {}, ...cols.map((c) => $("td", { class: typeof r[c] === "number" ? "num" : "", text: fmt(r[c]) })))));
}

// ---- evaluation: cue alignment and blank-out, per method and layer, with the baselines -------
async function evaluationPage() {
  const { evaluations } = await getJSON("data/evaluations.json");
  const kids = [$("h2", { text: "Evaluation" })];
  for (const ev of evaluations) {
    const methods = [...new Set(ev.summary.map((r) => r.method))];
    kids.push($("h3", { text: `${ev.kind}: ${ev.model}` + (ev.removal && ev.kind === "blank-out" ? ` (removal: ${ev.removal})` : "") }),
      $("p", { class: "muted", text: ev.path }));
    if (ev.kind === "cue-alignment") {
      const all = ev.summary.filter((r) => r.phenomenon === "all");
      const layers = [...new Set(all.map((r) => r.layer))].sort((a, b) => a - b);
      const random = layers.map((l) => [l, mean(all.filter((r) => r.layer === l).map((r) => r.random))]);
      kids.push($("div", { class: "row" }, lineChart("cue share (all phenomena) by layer", [
        ...methods.map((m) => ({ name: m, points: all.filter((r) => r.method === m).map((r) => [r.layer, r.mean]) })),
        { name: "random baseline", points: random }], 420, 240)));
      kids.push(tableOf("cue-summary", all, ["method", "layer", "mean", "ci_low", "ci_high", "random", "examples"]));
      if (ev.accuracy.length) kids.push($("h3", { text: "the model's own agreement accuracy" }), tableOf("accuracy", ev.accuracy, ["phenomenon", "accuracy", "pairs", "undecided"]));
    } else {
      const layered = ev.summary.filter((r) => !r.rollout);
      kids.push($("div", { class: "row" }, lineChart("Spearman with the blank-out change, by layer", methods.map((m) => ({
        name: m, points: layered.filter((r) => r.method === m).map((r) => [r.layer, r.mean]) })), 420, 240)));
      kids.push(tableOf("blank-out-summary", ev.summary, ["method", "layer", "rollout", "mean", "std", "examples"]));
    }
  }
  page().replaceChildren(...kids);
}
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / (xs.length || 1);

// ---- compare: two stores of the same texts ------------------------------------------------
async function comparePage(q) {
  const o = OVERVIEW, other = await getJSON("data/other/overview.json");
  const method = o.methods.includes(q.get("method")) ? q.get("method") : o.methods[0];
  const layer = o.layers.includes(Number(q.get("layer"))) ? Number(q.get("layer")) : o.layers[o.layers.length - 1];
  const kids = [$("h2", { text: "Compare" }), tableOf("compare-stores", [
    { store: "A", path: o.store, model: o.model, examples: o.examples, parts_done: o.parts_done },
    { store: "B", path: other.store, model: other.model, examples: other.examples, parts_done: other.parts_done }],
  ["store", "path", "model", "examples", "parts_done"])];
  if (o.aggregate && other.aggregate) {
    const curves = $("div", { class: "row", id: "compare-curves" });
    for (const [stat, title] of [["self_mass", "self share"], ["context_mass", "context share"], ["entropy", "row entropy"]]) {
      curves.append(lineChart(title, o.methods.flatMap((m) => [["A", o], ["B", other]].map(([tag, ov]) => ({
        name: `${tag}: ${m}`, points: ov.aggregate.layers.filter((r) => r.method === m).map((r) => [r.layer, r[stat]]) })))));
    }
    kids.push(curves);
  } else kids.push($("p", { class: "muted", text: "Curves side by side need both stores aggregated (`vz aggregate`)." }));
  const sel = (name, values, value) => { const el = $("select", { name, id: `cmp-${name}` }, ...values.map((v) => $("option", { value: v, text: v }))); el.value = String(value); return el; };
  const form = $("form", { class: "controls", onsubmit: (e) => {
    e.preventDefault();
    go(["compare"], new URLSearchParams({ method: form.elements.method.value, layer: form.elements.layer.value, run: "1" }));
  } }, $("span", { text: "examples that changed most:" }), sel("method", o.methods, method), $("span", { text: "layer" }),
  sel("layer", o.layers, layer), $("button", { text: "Rank" }));
  kids.push(form);
  if (q.get("run")) {
    const c = await getJSON(`data/compare.json?method=${encodeURIComponent(method)}&layer=${layer}&k=20`);
    kids.push($("p", { class: "muted", text: `${c.compared} examples compared (the first scored in both); ${c.different_tokens} left out: their tokens differ. Change: mean over rows of the total variation distance.` }));
    const t = tableOf("changed", c.rows, ["example_id", "value", "length", "text"]);
    t.querySelectorAll("tr").forEach((tr, i) => {
      if (!i) return;
      const cell = tr.firstChild, eid = c.rows[i - 1].example_id;
      cell.replaceChildren($("a", { href: `#/example/${eid}?m=${method}&l=${layer}&cmp=1`, text: String(eid) }));
    });
    kids.push(t);
  }
  page().replaceChildren(...kids);
}
