// vz view, the static site: one example and its maps read from the store itself (zarr.js), in the
// shapes the live server answers (`data/example/ID.json`, `data/maps/...f32`). What the server
// computes in Python is done here the same way: token labels (`vzcore.tokens.sequence_texts`,
// `span_text`), words (`ScoreResult.word_level`: a source word sums its tokens, a target word is
// the mean of its tokens' rows), and the rollout (`R^l = M^l R^{l-1}`, no identity mixing).
"use strict";

const siteStore = { root: null };
async function siteOpen(base) {
  if (!siteStore.root) {
    siteStore.root = (async () => {
      zarrPrefetch(`${base}/plan`, 2, Infinity);  // small, and preloaded by a site's index.html
      zarrPrefetch(`${base}/done`, 1, Infinity);
      const r = await fetch(`${base}/zarr.json`);
      if (!r.ok) throw new Error(`the store at ${base} cannot be read: HTTP ${r.status}`);
      const attrs = (await r.json()).attributes;
      const shape = (await zarrArray(`${base}/plan`)).meta.shape[0];
      const [plan, done] = await Promise.all([zarrRead(`${base}/plan`, 0, shape), zarrRead(`${base}/done`, 0, shape)]);
      return { base, attrs, plan, done, parts: shape };
    })();
    siteStore.root.catch(() => { siteStore.root = null; });  // tried again by the next page
  }
  return siteStore.root;
}

// Which part holds example `id` (the plan alone): its group's URL and the example's row in it.
async function sitePart(id) {
  const s = await siteOpen(SITE_URL);
  let lo = 0, hi = s.parts - 1;  // the last part whose start is <= id
  while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (s.plan[2 * mid] <= id) lo = mid; else hi = mid - 1; }
  if (!(s.parts && s.plan[2 * lo] <= id && id < s.plan[2 * lo + 1])) throw new Error(`no example ${id} in the store`);
  return { s, index: lo, part: `${s.base}/parts/${String(lo).padStart(5, "0")}`, i: id - s.plan[2 * lo], size: s.plan[2 * lo + 1] - s.plan[2 * lo] };
}

// Where example `id` lives: its part, its row in the part, its tokens' and values' offsets.
function siteRow(id) {
  return remember(siteRows, id, async () => {
    const { s, index, part, i, size } = await sitePart(id);
    for (const x of PART_ARRAYS) zarrPrefetch(`${part}/${x}`, 1, 1 << 18);  // most are whole in 256 KiB
    const [status, tok, val, truncated] = await Promise.all([
      zarrRead(`${part}/status`, i, i + 1), zarrRead(`${part}/token_offset`, i, i + 2),
      zarrRead(`${part}/value_offset`, i, i + 2), zarrRead(`${part}/truncated`, i, i + 1)]);
    // A part holds every id of its range in order (failed ones too), so row i is id start + i.
    if ((await zarrArray(`${part}/status`)).meta.shape[0] !== size) throw new Error(`part ${index} does not hold its planned range`);
    if (status[0] !== 0) throw new Error(`example ${id} was not scored (${status[0] === 1 ? "failed" : "skipped"})`);
    return { part, index, done: s.done[index], n: tok[1] - tok[0], tokens: [tok[0], tok[1]], values: val[0], truncated: Boolean(truncated[0]) };
  });
}
const siteRows = new Map();
const PART_ARRAYS = ["status", "token_offset", "value_offset", "truncated", "tokens", "token_ids", "word_ids"];

async function siteExample(id) {
  const row = await siteRow(id), s = await siteOpen(SITE_URL), [a, b] = row.tokens;
  // Decoding the tokens' chunks holds the thread a while: a map of this example asks for its
  // chunk first (once its shard index is in), so that its bytes travel meanwhile.
  const asking = mapIndex.get(id);
  const asked = asking ? asking.then(() => new Promise((go) => setTimeout(go, 0))) : Promise.resolve();
  await Promise.race([asked, new Promise((go) => setTimeout(go, 150))]);
  const [pieces, ids, wordIds] = await Promise.all(["tokens", "token_ids", "word_ids"].map((x) => zarrRead(`${row.part}/${x}`, a, b)));
  const special = new Set(s.attrs.special_token_ids);
  const units = wordUnits(wordIds), scheme = guessScheme(pieces);
  return {
    example_id: id, text: null, truncated: row.truncated, methods: s.attrs.methods, layers: s.attrs.layers,
    tokens: sequenceTexts(pieces, scheme), pieces, special: Array.from(ids, (t) => special.has(t)),
    words: units.map((ks) => spanText(ks.map((k) => pieces[k]), scheme)),
    word_special: units.map((ks) => ks.every((k) => special.has(ids[k]))),
  };
}

// The tokens of each unit of `word_level`, in its order: a word's tokens, or a token outside any word.
function wordUnits(wordIds) {
  const units = new Map();
  Array.from(wordIds).forEach((w, k) => {
    const key = w >= 0 ? `w${w}` : `t${k}`;
    if (!units.has(key)) units.set(key, []);
    units.get(key).push(k);
  });
  return [...units.values()];
}

// One `[n, n]` map as the server's `maps` route answers it (float32, targets by sources).
function siteMap(id, method, unit, mode, layer) {
  return remember(siteMaps, [id, method, unit, mode, layer].join("/"), () => readMap(id, method, unit, mode, layer));
}
const siteMaps = new Map();

const mapIndex = new Map();  // example id -> its latest map's array metadata and shard index, read
async function readMap(id, method, unit, mode, layer) {
  const url = `${(await sitePart(id)).part}/scores/${method}`;
  zarrPrefetch(url, 1, 1 << 13);  // its metadata and shard index, while the row is read
  mapIndex.set(id, zarrArray(url).then((a) => (a.shard ? shardIndex(a, a.key(0)) : null)).catch(() => null));
  const row = await siteRow(id), s = await siteOpen(SITE_URL);
  const m = s.attrs.methods.indexOf(method), li = s.attrs.layers.indexOf(layer);
  if (m < 0 || li < 0) throw new Error(`no method ${method} or layer ${layer} in the store`);
  if (!(Math.floor(row.done / 2 ** m) % 2)) throw new Error(`part ${row.index} is not complete for ${method}`);
  const n = row.n, causal = s.attrs.causal, per = causal ? (n * (n + 1)) / 2 : n * n;
  const from = mode === "rollout" ? 0 : li;  // the layers this view needs, and no others
  const flat = await zarrRead(`${row.part}/scores/${method}`, row.values + from * per, row.values + (li + 1) * per);
  let maps = [];
  for (let l = 0; l <= li - from; l++) maps.push(unpack(flat.subarray(l * per, (l + 1) * per), n, causal));
  let k = n;
  if (unit === "word") {
    const wordIds = await zarrRead(`${row.part}/word_ids`, row.tokens[0], row.tokens[1]);
    const units = wordUnits(wordIds);
    maps = maps.map((x) => wordLevel(x, n, units));
    k = units.length;
  }
  if (mode !== "rollout") return maps[0];
  let acc = Float64Array.from(maps[0]);
  for (let l = 1; l < maps.length; l++) acc = matmul(maps[l], acc, k);
  return Float32Array.from(acc);
}

function unpack(packed, n, causal) {
  if (!causal) return Float32Array.from(packed);
  const out = new Float32Array(n * n);  // 0 above the diagonal; row i holds i + 1 values
  for (let i = 0, at = 0; i < n; at += ++i) out.set(packed.subarray(at, at + i + 1), i * n);
  return out;
}

// Words: a source word's weight is the sum over its tokens, a target word's row the mean
// (NaN-skipping) of its tokens' rows; float64 sums, rounded to float32 as the server does.
function wordLevel(m, n, units) {
  const w = units.length, summed = new Float64Array(n * w), out = new Float32Array(w * w);
  for (let i = 0; i < n; i++) units.forEach((ks, u) => { let v = 0; for (const j of ks) v += m[i * n + j]; summed[i * w + u] = v; });
  units.forEach((ks, t) => {
    for (let u = 0; u < w; u++) {
      let sum = 0, count = 0;
      for (const i of ks) { const v = summed[i * w + u]; if (!Number.isNaN(v)) { sum += v; count++; } }
      out[t * w + u] = count ? sum / count : NaN;
    }
  });
  return out;
}

function matmul(a, b, k) {  // `a @ b` of two [k, k] maps, in float64
  const out = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const v = a[i * k + j];  // no skipping of zeros: 0 × NaN is NaN in numpy's product too
      for (let x = 0; x < k; x++) out[i * k + x] += v * b[j * k + x];
    }
  }
  return out;
}

// ---- token labels: `vzcore.tokens` in JavaScript -------------------------------------------
const BYTE_OF = (() => {  // GPT-2's bytes_to_unicode, inverted: printable character -> byte
  const printable = [];
  for (const [a, b] of [[33, 126], [161, 172], [174, 255]]) for (let c = a; c <= b; c++) printable.push(c);
  const table = new Map(printable.map((c) => [String.fromCharCode(c), c]));
  let shifted = 0;
  for (let b = 0; b < 256; b++) if (!printable.includes(b)) table.set(String.fromCharCode(256 + shifted++), b);
  return table;
})();
const FALLBACK = /^<0x([0-9A-Fa-f]{2})>$/;
const utf8 = (t) => new TextEncoder().encode(t);

function byteLevel(piece) {
  const out = [];
  for (const c of piece) { if (!BYTE_OF.has(c)) return null; out.push(BYTE_OF.get(c)); }
  return Uint8Array.from(out);
}
function pieceBytes(piece, scheme) {
  if (scheme === "byte_level") return byteLevel(piece) ?? utf8(piece);
  if (scheme === "sentencepiece") { const f = FALLBACK.exec(piece); return f ? Uint8Array.of(parseInt(f[1], 16)) : utf8(piece.replaceAll("▁", " ")); }
  if (scheme === "wordpiece" && piece.startsWith("##") && piece.length > 2) return utf8(piece.slice(2));
  return utf8(piece);
}
const concat = (parts) => { const out = new Uint8Array(parts.reduce((s, p) => s + p.length, 0)); let at = 0; for (const p of parts) { out.set(p, at); at += p.length; } return out; };
function validUtf8(data, cut) {
  let start = 0;
  while (cut && start < Math.min(data.length, 3) && data[start] >= 0x80 && data[start] < 0xc0) start++;
  try { new TextDecoder("utf-8", { fatal: true }).decode(data.subarray(start), { stream: cut }); return true; } catch { return false; }
}
const looksSpecial = (p) => [...p].length > 2 && "<[".includes(p[0]) && ">]".includes(p[p.length - 1]);

function guessScheme(pieces) {
  if (pieces.some((p) => p.startsWith("▁") || FALLBACK.test(p))) return "sentencepiece";
  const words = pieces.filter((p) => !looksSpecial(p)), raw = words.map(byteLevel);
  if (raw.every((r) => r !== null) && words.some((p) => /[^\x00-\x7f]/.test(p))) {
    const sure = words.some((p) => /[\u0100-\u0143]/.test(p));
    if (validUtf8(concat(raw), sure && words.length > 1)) return "byte_level";
  }
  return pieces.some((p) => p.startsWith("##") && p.length > 2) ? "wordpiece" : "plain";
}
function displayText(text) {
  const shown = text.replace(/^ +/, "").replaceAll("\n", "\\n").replaceAll("\t", "\\t").replaceAll("\r", "\\r");
  return shown || "␣".repeat(Math.max([...text].length, 1));
}
const decodeLoose = (b) => new TextDecoder().decode(b);  // invalid bytes as U+FFFD, as errors="replace"
const spanText = (pieces, scheme) => displayText(decodeLoose(concat(pieces.map((p) => pieceBytes(p, scheme)))));

function sequenceTexts(pieces, scheme) {
  const raw = pieces.map((p) => pieceBytes(p, scheme)), data = concat(raw), chars = [];
  const strict = new TextDecoder("utf-8", { fatal: true });
  for (let i = 0; i < data.length;) {  // each character's byte span; a stray or cut byte is U+FFFD alone
    const lead = data[i], size = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
    let ch;
    try { ch = i + size <= data.length ? strict.decode(data.subarray(i, i + size)) : null; } catch { ch = null; }
    if (ch === null || [...ch].length !== 1) { chars.push([i, i + 1, "\ufffd"]); i += 1; } else { chars.push([i, i + size, ch]); i += size; }
  }
  const out = [];
  let c = 0, start = 0;
  raw.forEach((r, p) => {
    const end = start + r.length;
    while (c < chars.length && chars[c][1] <= start) c++;
    let shown = "";
    for (let k = c; k < chars.length && chars[k][0] < end; k++) shown += chars[k][2];
    out.push(shown ? displayText(shown) : displayText(pieces[p]));
    start = end;
  });
  return out;
}

// A site's index.html names the store: its reads start now, while the app and the overview load,
// and so does the example of a link to one.
const SITE_URL = document.querySelector('meta[name="vz-store"]')?.content;
if (SITE_URL) {
  siteOpen(SITE_URL).catch(() => {});  // a failure is reported by the page that needs the store
  const linked = /^#\/example\/(\d+)/.exec(location.hash);
  if (linked) {  // the first map the page will draw: its first method at its layer (as exampleState reads the link)
    const q = new URLSearchParams(location.hash.split("?")[1] || ""), id = Number(linked[1]);
    siteRow(id).catch(() => {});
    siteOpen(SITE_URL).then(({ attrs }) => {
      const method = (q.get("m") || "").split(",").find((m) => attrs.methods.includes(m)) || attrs.methods[0];
      const layer = attrs.layers.includes(Number(q.get("l"))) && q.has("l") ? Number(q.get("l")) : attrs.layers[attrs.layers.length - 1];
      return siteMap(id, method, q.get("unit") === "word" ? "word" : "token", q.get("mode") === "rollout" ? "rollout" : "layer", layer);
    }).catch(() => {});
  }
}

