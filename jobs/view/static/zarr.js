// vz view, the static site: read a Zarr v3 store's arrays over plain HTTP, a chunk at a time.
// What a vz store uses, and no more: regular chunk grids chunked along the first axis, the default
// and v2 chunk keys, the `bytes`, `zstd` (the vendored fzstd), `crc32c` and `vlen-utf8` codecs, and
// the sharding codec with its index at the end. A sharded chunk is two HTTP Range requests (the
// shard's index, then the chunk's bytes); a server that ignores Range answers the whole shard,
// which is then kept and sliced. Checksums are stripped, not checked.
"use strict";

const ZARR_LRU = 24;  // decoded chunks and whole objects kept: an example page comes back to them
const zarrCache = { meta: new Map(), chunks: new Map(), whole: new Map(), index: new Map(), tail: new Map() };
const WHOLE_BYTES = 64 << 20;  // whole objects kept (a server that ignores Range sends shards whole)
const MISSING = 2 ** 64 - 1;  // a shard index entry of an empty chunk (both words all ones)

function remember(map, key, make, keep = ZARR_LRU) {
  if (map.has(key)) { const v = map.get(key); map.delete(key); map.set(key, v); return v; }
  const v = make();
  v.catch(() => map.delete(key));  // a failed read is not kept
  map.set(key, v);
  while (map.size > keep) map.delete(map.keys().next().value);
  return v;
}

// Bytes of `url`: all of it, or [start, end), or its last `-start` bytes (end null). Resolves to
// { bytes, whole }: `whole` when the server sent the whole object (it ignored Range).
async function zarrFetch(url, start = null, end = null) {
  const r = await rangeFetch(url, start === null ? null : start < 0 ? `bytes=${start}` : `bytes=${start}-${end - 1}`);
  if (r.status === 404) return null;
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return { bytes: new Uint8Array(await r.arrayBuffer()), whole: r.status !== 206 };
}

// `fetch(url)` with a Range header (`range`: null for none). A store on another origin that does
// not allow the Range header (a CORS rule without `AllowedHeaders: Range`) fails such requests as
// a network error: the object is then asked for whole, this time and from then on (slower, right).
let rangeRefused = false;
async function rangeFetch(url, range) {
  if (range === null || rangeRefused) return fetch(url);
  try {
    return await fetch(url, { headers: { Range: range } });
  } catch (err) {
    if (new URL(url, location.href).origin === location.origin) throw err;
    rangeRefused = true;
    return fetch(url);
  }
}

// The last `size` bytes (Infinity: all) of the object at `url`, asked for with its array's
// metadata rather than after it (a guess: a vz part's arrays are each one object, `c/0`): a small
// array's whole chunk, a shard's index. Resolves to { bytes, total } (total: the object's size;
// NaN if not said), or null.
function zarrTail(url, size) {
  return remember(zarrCache.tail, url, async () => {
    const r = await rangeFetch(url, size === Infinity ? null : `bytes=-${size}`);
    if (r.status === 404) return null;
    if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
    const bytes = new Uint8Array(await r.arrayBuffer());
    const total = r.status === 206 ? Number((r.headers.get("Content-Range") || "").split("/")[1]) : bytes.length;
    if (total === bytes.length) keepWhole(url, bytes);
    return { bytes, total };
  });
}

// Ask for an array's metadata and the end of its first object (`dims`: its dimensions; `size`:
// bytes) before they are needed: a page's requests then go out together, not one after another.
function zarrPrefetch(url, dims = 1, size = 1 << 16) {
  zarrTail(`${url}/c/${Array(dims).fill(0).join("/")}`, size).catch(() => {});
  zarrArray(url).then((a) => {
    if (a.shard && a.meta.shape[0] <= a.meta.chunk_grid.configuration.chunk_shape[0]) return shardIndex(a, a.key(0));
  }).catch(() => {});  // a real read reports it
}

// An array's metadata (`zarr.json`), with what reading it needs worked out once.
function zarrArray(url) {
  return remember(zarrCache.meta, url, async () => {
    const got = await zarrFetch(`${url}/zarr.json`);
    if (!got) throw new Error(`${url}: no such array in the store`);
    const meta = JSON.parse(new TextDecoder().decode(got.bytes));
    if (meta.zarr_format !== 3 || meta.node_type !== "array") throw new Error(`${url}: not a Zarr v3 array`);
    const outer = meta.chunk_grid.configuration.chunk_shape;
    const width = meta.shape.slice(1).reduce((a, b) => a * b, 1);
    if (outer.slice(1).some((c, d) => c !== meta.shape[d + 1])) throw new Error(`${url}: chunked along more than its first axis`);
    const shard = meta.codecs[0].name === "sharding_indexed" ? meta.codecs[0].configuration : null;
    if (shard && shard.index_location === "start") throw new Error(`${url}: shard index at the start is not read`);
    const keys = meta.chunk_key_encoding;
    const sep = keys.configuration?.separator ?? (keys.name === "v2" ? "." : "/");
    const tail = sep + meta.shape.slice(1).map(() => "0").join(sep);
    const key = (k) => `${url}/${keys.name === "v2" ? "" : `c${sep}`}${k}${meta.shape.length > 1 ? tail : ""}`;
    const rows = shard ? shard.chunk_shape[0] : outer[0];  // rows of one decoded chunk
    return { url, meta, width, shard, rows, perShard: shard ? outer[0] / rows : 1, key,
      codecs: shard ? shard.codecs : meta.codecs };
  });
}

// Rows [start, stop) of the array at `url` (a `vz` part's flat arrays: elements), as a typed array
// (int64 as Float64Array numbers, float16 as Float32Array, bool as Uint8Array) or, for strings, an Array.
async function zarrRead(url, start, stop) {
  const a = await zarrArray(url);
  stop = Math.min(stop, a.meta.shape[0]);
  if (start < 0 || start >= stop) throw new Error(`${url}: rows [${start}, ${stop}) out of range`);
  const first = Math.floor(start / a.rows), last = Math.floor((stop - 1) / a.rows);
  const parts = [];
  const lo = (start - first * a.rows) * a.width, hi = lo + (stop - start) * a.width;
  for (let c = first; c <= last; c++) parts.push(zarrChunk(a, c, hi - (c - first) * a.rows * a.width));
  const chunks = await Promise.all(parts);
  const pieces = chunks.map((c, i) => pick(c, Math.max(0, lo - i * a.rows * a.width), Math.min(a.rows * a.width, hi - i * a.rows * a.width)));
  if (pieces.length === 1) return pieces[0];
  if (Array.isArray(pieces[0])) return pieces.flat();
  const out = new pieces[0].constructor(hi - lo);
  pieces.reduce((at, p) => { out.set(p, at); return at + p.length; }, 0);
  return out;
}

// Elements [from, to) of a decoded chunk, converted only now: int64 and float16 to numbers, strings decoded.
function pick(chunk, from, to) {
  if (chunk instanceof Strings) return chunk.slice(from, to);
  if (Array.isArray(chunk)) return chunk.slice(from, to);
  if (chunk.kind === "int64" || chunk.kind === "uint64") {
    const out = new Float64Array(to - from), w = chunk.words;  // two 32-bit words each, low first
    for (let i = from; i < to; i++) out[i - from] = w[2 * i] + (chunk.kind === "int64" ? w[2 * i + 1] | 0 : w[2 * i + 1]) * 4294967296;
    return out;
  }
  if (chunk.kind === "float16") return Float32Array.from(chunk.words.subarray(from, to), (h) => HALF[h]);
  return chunk.subarray(from, to);
}

// One decoded chunk (`c`: its index along the first axis, counted in inner chunks when sharded),
// at least its first `upto` elements: zstd is decoded block by block and stops there, and a later
// read that needs more decodes the chunk again.
function zarrChunk(a, c, upto = Infinity) {
  const key = `${a.url}#${c}`, kept = zarrCache.chunks.get(key);
  if (kept && kept.upto >= upto) return remember(zarrCache.chunks, key, () => kept);
  const decoded = readChunk(a, c, upto);
  decoded.upto = upto;
  zarrCache.chunks.delete(key);
  return remember(zarrCache.chunks, key, () => decoded);
}

async function readChunk(a, c, upto) {
  if (!a.shard) {
    const got = await wholeObject(a.key(c));
    return got ? decodeChunk(a, got, upto) : fillChunk(a);
  }
  const url = a.key(Math.floor(c / a.perShard)), within = c % a.perShard;
  const index = await shardIndex(a, url);
  if (!index) return fillChunk(a);
  const offset = index[2 * within], size = index[2 * within + 1];
  if (offset === MISSING && size === MISSING) return fillChunk(a);
  return decodeChunk(a, await byteRange(url, offset, offset + size), upto);
}

// A shard's index: `[chunks, 2]` (offset, size) numbers, read from its last bytes; null if no shard.
function shardIndex(a, url) {
  return remember(zarrCache.index, url, async () => {
    const checksum = a.shard.index_codecs.some((x) => x.name === "crc32c") ? 4 : 0;
    const size = 16 * a.perShard + checksum;
    const guessed = await zarrCache.tail.get(url)?.catch(() => null), whole = zarrCache.whole.get(url);
    const got = guessed && guessed.bytes.length >= size ? guessed : whole ? { bytes: await whole, whole: true } : await zarrFetch(url, -size);
    if (!got) return null;
    if (got.whole) keepWhole(url, got.bytes);
    const tail = got.bytes.subarray(got.bytes.length - size, got.bytes.length - checksum);
    const view = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
    return Float64Array.from({ length: 2 * a.perShard }, (_, i) => Number(view.getBigUint64(8 * i, true)));
  });
}

function keepWhole(url, bytes) {  // the latest, up to WHOLE_BYTES: a part's shard of maps is up to tens of MiB
  const kept = zarrCache.whole;
  kept.sizes = kept.sizes || new Map();
  kept.bytes = (kept.bytes || 0) - (kept.sizes.get(url) || 0) + bytes.length;
  kept.delete(url);
  kept.set(url, Promise.resolve(bytes));
  kept.sizes.set(url, bytes.length);
  while (kept.bytes > WHOLE_BYTES && kept.size > 1) {
    const old = kept.keys().next().value;
    kept.delete(old);
    kept.bytes -= kept.sizes.get(old);
    kept.sizes.delete(old);
  }
}

// The whole object at `url` (null if missing): kept, or the guessed tail if it covered it, or fetched.
async function wholeObject(url) {
  await zarrCache.tail.get(url)?.catch(() => null);  // a guess in flight may bring it whole
  const whole = zarrCache.whole.get(url);
  if (whole) return whole;
  const got = await zarrFetch(url);
  if (got) keepWhole(url, got.bytes);
  return got && got.bytes;
}

async function byteRange(url, start, end) {
  const guessed = await zarrCache.tail.get(url)?.catch(() => null);
  if (guessed && guessed.total - guessed.bytes.length <= start) {  // the guessed tail holds these bytes
    const at = guessed.total - guessed.bytes.length;
    return guessed.bytes.subarray(start - at, end - at);
  }
  const whole = zarrCache.whole.get(url);
  if (whole) return (await whole).subarray(start, end);
  const got = await zarrFetch(url, start, end);
  if (!got) throw new Error(`${url}: missing`);
  if (!got.whole) return got.bytes;
  keepWhole(url, got.bytes);
  return got.bytes.subarray(start, end);
}

function decodeChunk(a, bytes, upto = Infinity) {
  const codecs = a.codecs;
  // Elements are bytes in order only under the `bytes` codec, and a prefix of zstd's output is a
  // prefix of them only when zstd is applied to them directly (k = 1).
  const need = codecs[0].name === "bytes" ? upto * dtypeSize(a.meta.data_type) : Infinity;
  for (let k = codecs.length - 1; k > 0; k--) {  // bytes-to-bytes codecs, last applied first undone
    const name = codecs[k].name;
    if (name === "zstd") bytes = k === 1 && need < Infinity ? zstdPrefix(bytes, need) : globalThis.fzstd.decompress(bytes);
    else if (name === "crc32c") bytes = bytes.subarray(0, bytes.length - 4);
    else throw new Error(`${a.url}: codec ${name} is not read by the static site`);
  }
  const kind = codecs[0];
  if (kind.name === "vlen-utf8") return new Strings(bytes);
  if (kind.name !== "bytes") throw new Error(`${a.url}: codec ${kind.name} is not read by the static site`);
  if (kind.configuration?.endian === "big" && dtypeSize(a.meta.data_type) > 1) throw new Error(`${a.url}: big-endian data`);
  return typed(a.meta.data_type, bytes.byteOffset % 8 ? bytes.slice() : bytes);
}

// The first `need` bytes (or a few more: whole zstd blocks) of a zstd frame's content.
function zstdPrefix(input, need) {
  const blocks = [], step = 1 << 14;
  let got = 0;
  const stream = new globalThis.fzstd.Decompress((block) => { blocks.push(block); got += block.length; });
  for (let at = 0; at < input.length && got < need; at += step) stream.push(input.subarray(at, at + step), at + step >= input.length);
  const out = new Uint8Array(got);
  blocks.reduce((at, b) => { out.set(b, at); return at + b.length; }, 0);
  return out;
}

function fillChunk(a) {
  const n = a.rows * a.width, fill = a.meta.fill_value;
  if (a.meta.data_type === "string") return Array(n).fill(fill ?? "");
  return new Float64Array(n).fill(Number(fill));  // "NaN" and true read as numbers too
}

const DTYPES = { int8: Int8Array, uint8: Uint8Array, bool: Uint8Array, int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array, float32: Float32Array, float64: Float64Array };
const dtypeSize = (t) => (t === "int64" || t === "uint64" ? 8 : t === "float16" ? 2 : DTYPES[t].BYTES_PER_ELEMENT);

// A chunk's values over its bytes: int64 and float16 stay as their raw words until `pick` reads them.
function typed(type, b) {
  const count = Math.floor(b.byteLength / dtypeSize(type));  // a prefix may end inside a value
  if (type === "int64" || type === "uint64") return { kind: type, words: new Uint32Array(b.buffer, b.byteOffset, 2 * count) };
  if (type === "float16") return { kind: type, words: new Uint16Array(b.buffer, b.byteOffset, count) };
  if (!DTYPES[type]) throw new Error(`data type ${type} is not read by the static site`);
  return new DTYPES[type](b.buffer, b.byteOffset, count);
}

// Every IEEE half as a float (each is one exactly): a table, built once, is faster than arithmetic per value.
const HALF = (() => {
  const out = new Float32Array(65536);
  for (let x = 0; x < 65536; x++) {
    const e = (x >> 10) & 31, m = x & 1023, s = x & 0x8000 ? -1 : 1;
    out[x] = e === 0 ? s * m * 2 ** -24 : e === 31 ? (m ? NaN : s * Infinity) : s * (1024 + m) * 2 ** (e - 25);
  }
  return out;
})();

// `vlen-utf8`: a uint32 count, then each string as a uint32 byte length and its bytes; a string
// is decoded only when read (a chunk holds 65,536 tokens, an example a few hundred).
class Strings {
  constructor(b) {
    const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
    this.bytes = b;
    this.length = view.getUint32(0, true);
    this.at = new Uint32Array(this.length + 1);
    let at = 4;
    for (let i = 0; i < this.length; i++) { this.at[i] = at; at += 4 + view.getUint32(at, true); }
    this.at[this.length] = at;
  }
  slice(from, to) {
    const text = new TextDecoder();
    return Array.from({ length: to - from }, (_, k) => text.decode(this.bytes.subarray(this.at[from + k] + 4, this.at[from + k + 1])));
  }
}

