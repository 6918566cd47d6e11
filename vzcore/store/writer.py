"""Write one part of a store (docs/store-layout.md): arrays and tables first, then mark the methods complete.

One writer per part group, always: zarr shards and metadata are read-modify-write, so two writers
in one group can silently lose data. The scoring job guarantees it by giving each part to one actor.
An array of several chunks is one shard (one object), written whole by the part's writer.
zarr is imported inside functions so that `import vzcore` stays free of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np

from vzcore.store.completion import complete_methods, set_complete
from vzcore.store.errors import StoreError
from vzcore.store.forms import FORM_TOP_K, StoreForm, held_positions, top_k_rows
from vzcore.store.layout import (
    DONE_ARRAY,
    PARTS_GROUP,
    PLAN_ARRAY,
    SCORES_GROUP,
    STATUS_FAILED,
    STATUS_SCORED,
    STATUS_SKIPPED,
    TABLES_DIR,
    TARGET_CHUNK_BYTES,
    TOP_K_GROUP,
    pack_maps,
    packed_size,
    part_path,
    texts_fingerprint,
)
from vzcore.store.location import Location
from vzcore.store.root import folder_state
from vzcore.store.tables import part_tables, write_part_tables
from vzcore.store.words import STRING_ARRAYS, pooled_words, word_arrays

__all__ = ["ExampleOutcome", "Written", "clear_store", "write_part"]


@dataclass(frozen=True)
class ExampleOutcome:
    """What scoring one example produced: its tokens and self-attention maps `[layers, n, n]` (word-pooled:
    `[layers, W, W]` over its words, `from_words`), or why it has none."""

    example_id: int
    status: int = STATUS_SCORED
    reason: str = ""
    tokens: Sequence[str] = ()
    token_ids: Sequence[int] = ()
    word_ids: Sequence[int | None] = ()
    truncated: bool = False
    scores: Mapping[str, np.ndarray] = field(default_factory=dict)  # method -> `[layers, n, n]`
    rows: Sequence[int] | None = None  # the target rows to store (ascending); None: every row
    # A word-pooled outcome (`from_words`): `scores` are `[layers, W, W]` over its words, `rows` count
    # words, and each token's word and each word's text are kept (`vzcore.store.words`).
    token_word: Sequence[int] | None = None  # `[n]` each token's word, words numbered by first token
    word_texts: Sequence[str] = ()  # `[W]` what each word reads as

    @classmethod
    def from_result(cls, example_id: int, result: Any, rows: Sequence[int] | None = None) -> ExampleOutcome:
        """Build a scored outcome from a `vzcore.ScoreResult` (keeping only `rows`, if given)."""
        return cls(
            example_id=int(example_id),
            tokens=list(result.tokens),
            token_ids=list(result.token_ids),
            word_ids=list(result.word_ids) if result.word_ids is not None else [None] * len(result.token_ids),
            truncated=bool(result.truncated),
            scores=dict(result.scores),
            rows=rows,
        )

    @classmethod
    def from_words(cls, example_id: int, result: Any, targeted: bool = False) -> ExampleOutcome:
        """Build a scored outcome holding `result.word_level()` (`words.pooled_words`: a `ValueError` for
        causal words that are not runs of tokens), each token's word and each word's text; with
        `targeted`, only the words holding a scored row are kept."""
        view, token_word = pooled_words(result)
        rows = np.flatnonzero(view.scored_rows).tolist() if targeted else None
        tokens = cls.from_result(example_id, result, rows)  # the token arrays, as a dense outcome holds them
        return replace(tokens, scores=dict(view.scores), token_word=token_word.tolist(), word_texts=list(view.words))

    @property
    def size(self) -> int:
        """Rows (and columns) of each stored map: its words if word-pooled, else its tokens."""
        if self.status != STATUS_SCORED:
            return 0
        return len(self.word_texts) if self.token_word is not None else self.n

    @classmethod
    def failed(cls, example_id: int, reason: str, *, skipped: bool = False) -> ExampleOutcome:
        """Build an outcome with no maps: failed (with a reason) or skipped (nothing to score)."""
        return cls(int(example_id), STATUS_SKIPPED if skipped else STATUS_FAILED, reason)

    @property
    def n(self) -> int:
        return len(self.token_ids) if self.status == STATUS_SCORED else 0


def clear_store(location: Location) -> None:
    """Delete a vz store's own entries (its root metadata, parts and tables), and nothing else.

    Refuses (`StoreError`) unless the root's attributes prove a vz store: whatever else sits in
    the folder is the user's, and stays.
    """

    state, names = folder_state(location)
    if state == "absent":
        return
    if state == "other":
        raise StoreError(f"{location.path} is not a vz store; nothing there is deleted")
    fs, path = location.filesystem()
    for name in (PARTS_GROUP, PLAN_ARRAY, DONE_ARRAY, TABLES_DIR, "zarr.json"):
        if name in names:
            fs.rm(f"{path.rstrip('/')}/{name}", recursive=True)


def _flat_array(group: Any, name: str, values: np.ndarray, dtype: str) -> None:
    from zarr.codecs import ZstdCodec

    itemsize = np.dtype(dtype).itemsize if dtype != "str" else 16
    chunk = max(1, min(len(values), TARGET_CHUNK_BYTES // itemsize))
    kw: dict = {} if dtype == "str" else {"compressors": ZstdCodec(level=3)}
    if len(values) > chunk:  # several chunks: one shard object holds them (a reader fetches one chunk's bytes)
        kw["shards"] = (-(-len(values) // chunk) * chunk,)
    # Every chunk is written, even one equal to the fill value: a part is published object by
    # object, and a chunk left out would leave an older one in its place.
    kw["config"] = {"write_empty_chunks": True}
    arr = group.create_array(
        name, shape=(len(values),), dtype=str if dtype == "str" else dtype, chunks=(chunk,), overwrite=True, **kw
    )
    if len(values):
        arr[:] = values


def _existing(location: Location, path: str) -> Any:
    """Return the part's group as stored (read-only), or None if it was never written."""
    try:
        return location.open_group(mode="r", path=path)
    except FileNotFoundError:  # zarr's GroupNotFoundError: not written yet
        return None


def _require_parts_group(location: Location) -> None:
    """Create `parts/` (and the root) as zarr groups if missing: one check when a part is first written."""

    fs, path = location.filesystem(f"{PARTS_GROUP}/zarr.json")
    if not fs.exists(path):
        location.open_group(mode="a", path=PARTS_GROUP)


def _memory_group(objects: dict) -> Any:
    """Return a zarr group whose objects land in `objects` (key -> buffer), to be published at once."""
    import zarr
    from zarr.storage import MemoryStore

    return zarr.open_group(store=MemoryStore(objects), mode="w", zarr_format=3)


def _publish(location: Location, path: str, objects: dict) -> None:
    """Write a part built in memory: every object, then its group's `zarr.json` (its `complete` mark)."""
    import os

    fs, prefix = location.filesystem(path)
    data = {f"{prefix}/{key}": buf.to_bytes() for key, buf in objects.items()}
    mark = data.pop(f"{prefix}/zarr.json")
    if not location.is_url:
        for folder in {k.rsplit("/", 1)[0] for k in (*data, f"{prefix}/zarr.json")}:
            os.makedirs(folder, exist_ok=True)
    fs.pipe(data)
    fs.pipe_file(f"{prefix}/zarr.json", mark)


class Written(NamedTuple):
    """What a part holds once written: its complete methods, and those it held before and lost (its
    examples changed since they were scored, so it was rewritten without them)."""

    complete: list[str]
    dropped: list[str]

    @classmethod
    def of(cls, old: Any, complete: list[str]) -> Written:
        before = complete_methods(old.attrs) if old is not None else []
        return cls(complete, [m for m in before if m not in complete])


def _base_matches(group: Any, ids: np.ndarray, lengths: np.ndarray, status: np.ndarray) -> bool:
    """Whether a stored part holds the same examples, with the same lengths and statuses (an example that
    failed before and scores now, or the reverse, changes the part's packing: it is rewritten)."""
    attrs = group.attrs
    if not attrs.get("base_complete"):
        return False
    try:
        return (
            np.array_equal(group["example_id"][:], ids)
            and np.array_equal(group["length"][:], lengths)
            and np.array_equal(group["status"][:], status)
        )
    except KeyError:
        return False


def _held_rows(o: ExampleOutcome, targeted: bool) -> np.ndarray:
    """Return the rows an outcome's example keeps: its target rows, or all of them."""
    if o.status != STATUS_SCORED:
        return np.zeros(0, dtype=np.int32)
    if not targeted or o.rows is None:
        return np.arange(o.size, dtype=np.int32)
    rows = np.unique(np.asarray(o.rows, dtype=np.int32))
    if len(rows) and not 0 <= rows[0] <= rows[-1] < o.size:
        raise ValueError(f"example {o.example_id}: target rows {rows.tolist()} outside its {o.size} rows")
    return rows


def _concat(arrays: Sequence[np.ndarray], dtype) -> np.ndarray:
    return np.concatenate([np.zeros(0, dtype=dtype), *arrays]).astype(dtype)


def _rows_match(group: Any, forms: np.ndarray, held: list[np.ndarray]) -> bool:
    """Whether a stored v4 part keeps the same forms and rows (its value arrays are then reusable)."""
    try:
        return np.array_equal(group["form"][:], forms) and np.array_equal(group["rows"][:], _concat(held, np.int32))
    except KeyError:
        return False


def _write_top_k(group, method, outcomes, forms, held, form, causal, num_maps, store_dtype) -> None:
    """Write `topk/{method}/`: per example an entry offset, per row a count and kept mass, per entry
    a source and a value (`vzcore.store.forms.top_k_rows`)."""
    kept = []
    for k, o in enumerate(outcomes):
        if forms[k] != FORM_TOP_K or o.status != STATUS_SCORED:
            continue
        maps = o.scores.get(method)
        if maps is None:  # scored before for other methods but not now: every row unscored
            maps = np.full((num_maps, o.n, o.n), np.nan, dtype=np.float32)
        kept.append((k, top_k_rows(maps, held[k], form.k, form.threshold, causal, store_dtype)))
    entries = np.zeros(len(outcomes) + 1, dtype=np.int64)
    for k, rows in kept:
        entries[k + 1] = len(rows.value)
    sub = group.require_group(f"{TOP_K_GROUP}/{method}")
    _flat_array(sub, "offset", np.cumsum(entries), "int64")
    _flat_array(sub, "count", _concat([r.count for _, r in kept], np.int32), "int32")
    _flat_array(sub, "mass", _concat([r.mass for _, r in kept], np.float32), "float32")
    index = np.int32 if any(r.source.dtype == np.int32 for _, r in kept) else np.int16
    _flat_array(sub, "source", _concat([r.source for _, r in kept], index), np.dtype(index).name)
    _flat_array(sub, "value", _concat([r.value for _, r in kept], np.dtype(store_dtype)), store_dtype)


def _write_tables(location: Location, part: int, arrays: dict, failures: dict, special_ids, ids, texts) -> None:
    text = dict(zip(ids.tolist(), texts, strict=True)).get if texts is not None else None
    write_part_tables(location, part, part_tables(arrays, part, special_ids, failures, text))


def write_part(
    store: Location | str,
    part: int,
    outcomes: Sequence[ExampleOutcome],
    methods: Sequence[str],
    *,
    causal: bool,
    num_maps: int,
    start: int | None = None,
    stop: int | None = None,
    store_dtype: str = "float16",
    texts: Sequence[object] | None = None,
    special_ids: Sequence[int] = (),
    form: StoreForm | None = None,
    targeted: bool = False,
) -> Written:
    """Write part `part` holding `outcomes` (in id order) and its tables, then mark `methods` complete in it.

    `texts` are the part's input rows in id order (the tables' `text`; None: unknown). Their hash
    (`layout.texts_fingerprint`) is kept with the part as `data_hash`, so a rerun or a reader can
    tell whether the part was scored from the same rows. `special_ids` mark the tokens table's
    special tokens.

    `num_maps` is how many maps each scored example holds (one per stored layer). When the part
    already holds the same examples, only the `methods` arrays are (re)written and appended to the
    part's `complete` list; otherwise the part is rewritten from scratch, holding `methods` alone.
    Returns the methods the part holds complete once written (what the completion index must say) and
    those it held before but not now (`Written`).
    `start`/`stop` default to the id range of `outcomes`. The caller must be the only writer of this part.

    `form` (default dense) and `targeted` (each outcome's `rows` are the rows to keep) make a
    layout v4 part (`vzcore.store.forms`); a dense part of every row is written exactly as v3. A
    `words` form takes word-pooled outcomes (`ExampleOutcome.from_words`) and adds the part's word
    arrays (`vzcore.store.words`).
    """

    location = store if isinstance(store, Location) else Location(str(store))
    outcomes = sorted(outcomes, key=lambda o: o.example_id)
    ids = np.asarray([o.example_id for o in outcomes], dtype=np.int64)
    lengths = np.asarray([o.n for o in outcomes], dtype=np.int32)
    start = int(ids[0]) if start is None and len(ids) else (start or 0)
    stop = int(ids[-1]) + 1 if stop is None and len(ids) else (stop or 0)
    form = form or StoreForm()
    v4 = form.reduced or targeted
    held = [_held_rows(o, targeted) for o in outcomes]
    forms = np.asarray([form.form_of(int(n)) if n else 0 for n in lengths], dtype=np.int8)
    if form.words and any(o.token_word is None for o in outcomes if o.status == STATUS_SCORED):
        raise ValueError("a words store takes word-pooled outcomes (`ExampleOutcome.from_words`)")
    if v4:  # dense examples pack their held rows' valid entries; top-k examples keep nothing here
        sizes = np.asarray(
            [
                0 if f == FORM_TOP_K else num_maps * len(held_positions(r, o.size, causal))
                for f, r, o in zip(forms, held, outcomes, strict=True)
            ],
            dtype=np.int64,
        )
    else:
        sizes = np.asarray([packed_size(int(n), int(n), num_maps, causal) for n in lengths], dtype=np.int64)
    value_offset = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    row_offset = np.concatenate([[0], np.cumsum([len(r) for r in held])]).astype(np.int64)

    # The part is built in memory and published object by object, its group's `zarr.json` (which
    # holds `complete`) last: one PUT per object on object storage, where zarr writing in place
    # checks and lists the hierarchy for every array (~215 requests a part, against ~25 objects).
    # Only this part's own metadata is read: nothing of the root, nothing that grows with the store.
    path = part_path(part)
    old = _existing(location, path)
    status = np.asarray([o.status for o in outcomes], dtype=np.int8)
    reuse = old is not None and _base_matches(old, ids, lengths, status) and (not v4 or _rows_match(old, forms, held))
    objects: dict = {}
    group = _memory_group(objects)
    if reuse:
        assert old is not None
        done = [m for m in complete_methods(old.attrs) if m not in methods]
        if done != complete_methods(old.attrs):  # a reader must never see a method done while it is rewritten
            set_complete(location.open_group(mode="r+", path=path), done)
        group.attrs.update({**old.attrs, "start": start, "stop": stop})
        set_complete(group, done)
    else:
        if old is not None:  # rewritten from scratch: nothing stale of the old part stays
            fs, prefix = location.filesystem(path)
            fs.rm(prefix, recursive=True)
        else:
            _require_parts_group(location)
        group.attrs.update({"start": start, "stop": stop, "complete": [], "base_complete": False})
        scored = [o for o in outcomes if o.status == STATUS_SCORED]
        arrays: dict[str, np.ndarray] = {
            "example_id": ids,
            "status": status,
            "length": lengths,
            "truncated": np.asarray([o.truncated for o in outcomes], dtype=bool),
            "token_offset": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            "value_offset": value_offset,
            "token_ids": np.asarray([i for o in scored for i in o.token_ids], dtype=np.int32),
            "word_ids": np.asarray([-1 if w is None else int(w) for o in scored for w in o.word_ids], dtype=np.int32),
            "tokens": np.asarray([str(t) for o in scored for t in o.tokens], dtype=object),
        }
        if v4:
            arrays |= {"form": forms, "row_offset": row_offset, "rows": _concat(held, np.int32)}
        if form.words:
            arrays |= word_arrays(outcomes)
        for name, values in arrays.items():
            _flat_array(group, name, values, "str" if name in STRING_ARRAYS else str(values.dtype))
        failures = {str(o.example_id): o.reason for o in outcomes if o.status != STATUS_SCORED}
        _write_tables(location, part, arrays, failures, special_ids, ids, texts)
        data_hash = texts_fingerprint(texts) if texts is not None else None
        group.attrs.update({"failures": failures, "base_complete": True, "data_hash": data_hash})
        done = []

    scores = group.require_group(SCORES_GROUP)
    for method in methods:
        flat = np.full(int(value_offset[-1]), np.nan, dtype=store_dtype)
        for k, o in enumerate(outcomes):
            maps = o.scores.get(method) if o.status == STATUS_SCORED else None
            if maps is None:
                continue  # scored before for other methods but not now: stays NaN
            if maps.shape != (num_maps, o.size, o.size):  # self-attention over the example's tokens (or words)
                unit = "words" if o.token_word is not None else "tokens"
                raise ValueError(
                    f"example {o.example_id}: maps of shape {maps.shape}; the store holds {num_maps} layers "
                    f"of [{o.size}, {o.size}] (its {o.size} {unit})"
                )
            if not v4:
                flat[value_offset[k] : value_offset[k + 1]] = pack_maps(maps, causal)
            elif forms[k] != FORM_TOP_K:
                where = held_positions(held[k], o.size, causal)
                flat[value_offset[k] : value_offset[k + 1]] = maps.reshape(num_maps, -1)[:, where].reshape(-1)
        _flat_array(scores, method, flat, store_dtype)
        if form.top_k:  # a words store is reduced (v4) but keeps no top-k rows
            _write_top_k(group, method, outcomes, forms, held, form, causal, num_maps, store_dtype)
    set_complete(group, [*done, *methods])
    _publish(location, path, objects)
    return Written.of(old, [*done, *methods])
