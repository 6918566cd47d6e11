"""Write one part of a v5 store: encoder–decoder pairs, every site's maps (`vzcore.store.sites`).

The part is built and published as `vzcore.store.writer.write_part` does (arrays and tables first,
the group's `zarr.json` holding `complete` last; one writer per part). What differs: two streams
per example (the source's tokens or frames, the target's tokens), how the target was decoded, and
each method's values holding every site's maps of an example, site after site.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vzcore.store.completion import complete_methods, set_complete
from vzcore.store.layout import (
    SCORES_GROUP,
    STATUS_FAILED,
    STATUS_SCORED,
    STATUS_SKIPPED,
    part_path,
    texts_fingerprint,
)
from vzcore.store.location import Location
from vzcore.store.sites import DECODING_FORCED, DECODINGS, SiteLayout, pack_sites, site_sizes
from vzcore.store.tables import pair_tables, write_part_tables
from vzcore.store.writer import Written, _existing, _flat_array, _memory_group, _publish, _require_parts_group

__all__ = ["PairOutcome", "frame_labels", "write_pair_part"]


def frame_labels(count: int, seconds_per_frame: float) -> list[str]:
    """Labels of audio frames (a frame stream's `tokens`): each frame's time, e.g. `0.24s` (Whisper's frame k
    is centred on k frames' seconds: `vzcore.audio.frame_centre`)."""
    return [f"{k * seconds_per_frame:.2f}s" for k in range(count)]


@dataclass(frozen=True)
class PairOutcome:
    """What scoring one (source, target) pair produced: both streams and each site's maps, or why none.

    A frame stream has ids -1 and its frames' start times as tokens (`frame_labels`)."""

    example_id: int
    status: int = STATUS_SCORED
    reason: str = ""
    source_tokens: Sequence[str] = ()
    source_ids: Sequence[int] = ()
    source_word_ids: Sequence[int | None] = ()
    target_tokens: Sequence[str] = ()
    target_ids: Sequence[int] = ()
    target_word_ids: Sequence[int | None] = ()
    decoding: str = "forced"  # `forced` (the given target) or `greedy` (the model's own output)
    scores: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)  # method -> site -> maps

    @classmethod
    def from_result(cls, example_id: int, result: Any) -> PairOutcome:
        """Build a scored outcome from a `vzcore.result.Seq2SeqResult` scored at positions (no spans)."""
        n_src, n_tgt = int(result.n_source), len(result.target_ids)
        if result.source_ids is None:  # audio: frames
            labels = frame_labels(n_src, result.seconds_per_source or 0.0)
            src_tokens, src_ids, src_words = labels, [-1] * n_src, [None] * n_src
        else:
            src_ids = list(result.source_ids)
            src_tokens = list(result.source_tokens or [str(i) for i in src_ids])
            src_words = list(result.source_word_ids or [None] * n_src)
        methods = {m for site in result.sites.values() for m in site.scores}
        return cls(
            example_id=int(example_id),
            source_tokens=src_tokens,
            source_ids=src_ids,
            source_word_ids=src_words,
            target_tokens=list(result.target_tokens or [str(i) for i in result.target_ids]),
            target_ids=list(result.target_ids),
            target_word_ids=list(result.target_word_ids or [None] * n_tgt),
            decoding="greedy" if result.target_from == "greedy" else "forced",
            scores={m: {s: site.scores[m] for s, site in result.sites.items()} for m in methods},
        )

    @classmethod
    def failed(cls, example_id: int, reason: str, *, skipped: bool = False) -> PairOutcome:
        return cls(int(example_id), STATUS_SKIPPED if skipped else STATUS_FAILED, reason)

    @property
    def scored(self) -> bool:
        return self.status == STATUS_SCORED

    @property
    def n_source(self) -> int:
        return len(self.source_ids) if self.scored else 0

    @property
    def n_target(self) -> int:
        return len(self.target_ids) if self.scored else 0


def _words(outcomes: Sequence[PairOutcome], name: str) -> np.ndarray:
    return np.asarray([-1 if w is None else int(w) for o in outcomes if o.scored for w in getattr(o, name)], np.int32)


def _base(outcomes: Sequence[PairOutcome]) -> dict[str, np.ndarray]:
    """The part's example and token arrays (both streams)."""
    src = np.asarray([o.n_source for o in outcomes], dtype=np.int32)
    tgt = np.asarray([o.n_target for o in outcomes], dtype=np.int32)
    code = {name: k for k, name in DECODINGS.items()}
    scored = [o for o in outcomes if o.scored]
    return {
        "example_id": np.asarray([o.example_id for o in outcomes], dtype=np.int64),
        "status": np.asarray([o.status for o in outcomes], dtype=np.int8),
        "length": src,
        "truncated": np.zeros(len(outcomes), dtype=bool),  # pairs are scored whole, never cut
        "token_offset": np.concatenate([[0], np.cumsum(src)]).astype(np.int64),
        "token_ids": np.asarray([i for o in scored for i in o.source_ids], dtype=np.int32),
        "word_ids": _words(outcomes, "source_word_ids"),
        "tokens": np.asarray([str(t) for o in scored for t in o.source_tokens], dtype=object),
        "target_length": tgt,
        "target_offset": np.concatenate([[0], np.cumsum(tgt)]).astype(np.int64),
        "target_ids": np.asarray([i for o in scored for i in o.target_ids], dtype=np.int32),
        "target_word_ids": _words(outcomes, "target_word_ids"),
        "target_tokens": np.asarray([str(t) for o in scored for t in o.target_tokens], dtype=object),
        "decoding": np.asarray([code[o.decoding] if o.scored else DECODING_FORCED for o in outcomes], dtype=np.int8),
    }


def _reusable(old: Any, base: dict[str, np.ndarray]) -> bool:
    """Whether a stored part holds the same examples and streams (only new methods' values are then written)."""
    if old is None or not old.attrs.get("base_complete"):
        return False
    try:
        # the streams' ids too: a greedy target of the same length may be other tokens on another run
        same = ("example_id", "status", "length", "target_length", "decoding", "token_ids", "target_ids")
        return all(np.array_equal(old[k][:], base[k]) for k in same)
    except KeyError:
        return False


def write_pair_part(
    store: Location | str,
    part: int,
    outcomes: Sequence[PairOutcome],
    methods: Sequence[str],
    *,
    sites: Sequence[SiteLayout],
    start: int | None = None,
    stop: int | None = None,
    store_dtype: str = "float16",
    rows: Sequence[object] | None = None,
    special_ids: Sequence[int] = (),
) -> Written:
    """Write part `part` of a v5 store holding `outcomes` (in id order) and its tables, then mark
    `methods` complete in it. `rows` are the part's input rows in id order (their hash is the part's
    `data_hash`; a row's source text, and its target text, fill the examples table). Returns the
    methods the part holds complete once written, and those it lost (`vzcore.store.writer.Written`: a part
    whose examples changed holds `methods` alone)."""
    location = store if isinstance(store, Location) else Location(str(store))
    outcomes = sorted(outcomes, key=lambda o: o.example_id)
    base = _base(outcomes)
    ids = base["example_id"]
    start = int(ids[0]) if start is None and len(ids) else (start or 0)
    stop = int(ids[-1]) + 1 if stop is None and len(ids) else (stop or 0)
    sizes = [sum(site_sizes(sites, o.n_source, o.n_target)) for o in outcomes]
    value_offset = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    path = part_path(part)
    old = _existing(location, path)
    objects: dict = {}
    group = _memory_group(objects)
    if _reusable(old, base):
        assert old is not None
        done = [m for m in complete_methods(old.attrs) if m not in methods]
        if done != complete_methods(old.attrs):  # a reader must never see a method done while it is rewritten
            set_complete(location.open_group(mode="r+", path=path), done)
        group.attrs.update({**old.attrs, "start": start, "stop": stop})
        set_complete(group, done)
    else:
        if old is not None:
            fs, prefix = location.filesystem(path)
            fs.rm(prefix, recursive=True)
        else:
            _require_parts_group(location)
        group.attrs.update({"start": start, "stop": stop, "complete": [], "base_complete": False})
        arrays = {**base, "value_offset": value_offset}
        for name, values in arrays.items():
            _flat_array(group, name, values, "str" if name in ("tokens", "target_tokens") else str(values.dtype))
        failures = {str(o.example_id): o.reason for o in outcomes if not o.scored}
        row_of = dict(zip(ids.tolist(), rows, strict=True)).get if rows is not None else None
        write_part_tables(location, part, pair_tables(arrays, part, special_ids, failures, row_of))
        data_hash = texts_fingerprint(rows) if rows is not None else None
        group.attrs.update({"failures": failures, "base_complete": True, "data_hash": data_hash})
        done = []

    scores = group.require_group(SCORES_GROUP)
    for method in methods:
        flat = np.full(int(value_offset[-1]), np.nan, dtype=store_dtype)
        for k, o in enumerate(outcomes):
            maps = o.scores.get(method) if o.scored else None
            if maps is None:
                continue  # scored before for other methods but not now: stays NaN
            try:
                flat[value_offset[k] : value_offset[k + 1]] = pack_sites(sites, maps, o.n_source, o.n_target)
            except ValueError as err:
                raise ValueError(f"example {o.example_id}, {method}: {err}") from None
        _flat_array(scores, method, flat, store_dtype)
    set_complete(group, [*done, *methods])
    _publish(location, path, objects)
    return Written.of(old, [*done, *methods])
