"""Read one part of a store (docs/store-layout.md): its per-example arrays once, then slices of its
token and score arrays, as `vzcore.ScoreResult`s (a words part's as `WordResult`s, a v5 part's as
`Seq2SeqResult`s), or packed as v3 packs them for the statistics. A worker reads a part without
opening the whole store (`open_part`); `vzcore.store.reader.Store` reads through these.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from vzcore.maps import FRAMES, TOKENS, self_site
from vzcore.result import ScoreResult, held_rows
from vzcore.store.errors import ExampleNotScoredError, StoreError
from vzcore.store.layout import SCORES_GROUP, STATUS_NAMES, STATUS_SCORED, pack_maps, part_path
from vzcore.store.location import Location
from vzcore.store.pairreader import SiteGroup, read_pairs
from vzcore.store.reduced import PartRows, read_dense
from vzcore.store.root import RootAttrs
from vzcore.store.tables import PART_ARRAYS, part_tables
from vzcore.store.words import PartWords, word_result, word_types

__all__ = ["DEFAULT_BLOCK_VALUES", "PartReader", "open_part"]

DEFAULT_BLOCK_VALUES = 1 << 22  # flat values per method read at once when streaming a part
SKIP_VALUES = 1 << 18  # a gap between wanted examples worth skipping rather than reading (about a chunk)


class PartReader:
    """Reads one part group: its per-example arrays once, then slices of the token and score arrays.

    It needs only the part's group and the root attributes, so a worker can read one part
    without opening the whole store (`open_part`).
    """

    def __init__(self, group: Any, part: int, info: RootAttrs) -> None:
        if info.view is not None:  # one site of a v5 part, read as a v3 part
            group = SiteGroup(group, info, part)
        self.group = group
        self.part = part
        self.info = info
        self.example_id = self.array("example_id")
        self.status = self.array("status")
        self.length = self.array("length")
        self.truncated = self.array("truncated")
        self.token_offset = self.array("token_offset")
        self.value_offset = self.array("value_offset")
        self.failures: dict = dict(group.attrs.get("failures", {}))
        self.words = PartWords(self) if info.form.words else None  # a words part: each example's word count
        self.rows = PartRows(self, info.reduced)  # which rows each example holds, and in which form
        self.dense_offset = self.rows.dense_offset  # each example's values once made dense (v3: `value_offset`)

    def array(self, name: str, where: slice = slice(None), examples: str = "") -> np.ndarray:
        """Read `where` of the part's array `name`; a damaged chunk is a `StoreError` naming the part,
        the array and the examples read (`examples`, e.g. "examples 3..5"), and how to repair it."""
        try:
            return self.group[name][where]
        except Exception as err:
            what = f" ({examples})" if examples else ""
            raise StoreError(
                f"part {self.part}: array {name}{what} cannot be read: {type(err).__name__}: {err}; "
                "`vz verify STORE --repair` unmarks the part so that the next `vz score` rewrites it"
            ) from err

    def index_of(self, example_id: int) -> int:
        k = int(np.searchsorted(self.example_id, example_id))
        if k >= len(self.example_id) or self.example_id[k] != example_id:
            raise StoreError(f"example {example_id} is not in part {self.part}")
        return k

    def _check_scored(self, k: int) -> None:
        status = int(self.status[k])
        if status != STATUS_SCORED:
            eid = int(self.example_id[k])
            reason = self.failures.get(str(eid), "")
            name = STATUS_NAMES.get(status, f"status {status}")
            raise ExampleNotScoredError(f"example {eid} has no maps: {name}" + (f" ({reason})" if reason else ""))

    def example(self, example_id: int, methods: Sequence[str], text: str | None = None) -> Any:
        k = self.index_of(example_id)
        self._check_scored(k)
        return next(iter(self._read(k, k + 1, methods, text=text)))[1]

    def iter_results(
        self, methods: Sequence[str], ids: set[int] | None = None, max_values: int = DEFAULT_BLOCK_VALUES
    ) -> Iterator[list[tuple[int, Any]]]:
        """Yield blocks of scored examples, each read with one slice per array (about `max_values` values).

        With `ids`, only the stretches holding those examples are read: a block spans wanted
        examples at most `SKIP_VALUES` apart, so a rare token's few examples in a large part cost
        their own chunks, not the part's."""
        want = range(len(self.example_id)) if ids is None else np.flatnonzero(np.isin(self.example_id, list(ids)))
        vo = self.dense_offset  # blocks are sized by what they take once dense, whatever their stored form
        i = 0
        while i < len(want):
            j = i + 1
            while (
                j < len(want)
                and vo[want[j] + 1] - vo[want[i]] <= max_values
                and vo[want[j]] - vo[want[j - 1] + 1] <= SKIP_VALUES
            ):
                j += 1
            yield list(self._read(int(want[i]), int(want[j - 1]) + 1, methods, ids=ids))
            i = j

    def _read(self, a: int, b: int, methods: Sequence[str], ids=None, text=None) -> Iterator[tuple[int, Any]]:
        if self.info.sites and self.info.view is None:  # v5: pairs, every site
            yield from read_pairs(self, a, b, methods, ids)
            return
        t0, t1 = int(self.token_offset[a]), int(self.token_offset[b])
        first, last = int(self.example_id[a]), int(self.example_id[b - 1])
        span = f"example {first}" if first == last else f"examples {first}..{last}"
        token_ids = self.array("token_ids", slice(t0, t1), span)
        word_ids = self.array("word_ids", slice(t0, t1), span)
        tokens = self.array("tokens", slice(t0, t1), span)
        words = self.words
        if words is not None:  # a words part: each token's word, each word's text (one slice each)
            token_word = self.array("token_word", slice(t0, t1), span)
            u0, u1 = int(words.offset[a]), int(words.offset[b])
            word_text = self.array("word_text", slice(u0, u1), span)
        dense = read_dense(self, a, b, methods, span)
        layers = self.info.layers
        # A v3 store holds one site: self-attention over each example's tokens; a speech model's encoder
        # site (read as one site) relates audio frames, which is what its plots must call its columns.
        frames = self.info.audio and self.info.view == "encoder"
        site = self_site(self.info.causal, FRAMES if frames else TOKENS)
        for k in range(a, b):
            eid = int(self.example_id[k])
            if self.status[k] != STATUS_SCORED or (ids is not None and eid not in ids):
                continue
            n = int(self.length[k])
            ts = slice(int(self.token_offset[k]) - t0, int(self.token_offset[k + 1]) - t0)
            read = {meth: dense[meth][k - a] for meth in methods}
            if words is not None:  # a words part: the example as `word_level()` gave it
                us = slice(int(words.offset[k]) - u0, int(words.offset[k + 1]) - u0)
                yield eid, word_result(self, k, (tokens[ts], token_ids[ts], token_word[ts], word_text[us]), read, text)
                continue
            scores = {meth: maps for meth, (maps, _) in read.items()}  # type: ignore[misc]
            yield (
                eid,
                ScoreResult(
                    tokens=[str(t) for t in tokens[ts]],
                    token_ids=[int(t) for t in token_ids[ts]],
                    # The layout stores "no word" as -1; an example with no word at all had none known.
                    word_ids=None if (word_ids[ts] < 0).all() else [None if w < 0 else int(w) for w in word_ids[ts]],
                    layers=list(layers),
                    scores=scores,
                    text=text,
                    truncated=bool(self.truncated[k]),
                    scored_rows=held_rows(scores, n),
                    site=site,
                    kept_mass={meth: mass for meth, (_, mass) in read.items()},  # type: ignore[misc]
                ),
            )

    def packed_values(self, a: int, b: int, ks: Sequence[int], method: str, span: str) -> list[np.ndarray]:
        """Return the values of examples `ks` (scored, within `a..b-1`) as v3 packs them
        (`layout.pack_maps`), whatever form they are stored in: rows not held are NaN, entries not kept 0.

        What the statistics read (`vzcore.statistics.ExampleBlock.values`): one slice per array."""
        if not self.info.reduced or (self.words is not None and self.info.targets is None):  # stored as v3 packs
            v0, v1 = int(self.value_offset[a]), int(self.value_offset[b])
            flat = self.array(f"{SCORES_GROUP}/{method}", slice(v0, v1), span)
            return [flat[self.value_offset[k] - v0 : self.value_offset[k + 1] - v0] for k in ks]
        dense = read_dense(self, a, b, [method], span)[method]
        return [pack_maps(dense[k - a][0], self.info.causal) for k in ks]  # type: ignore[index]

    @property
    def unit_offset(self) -> np.ndarray:
        """`[m+1]`: where each example's units (its maps' rows: tokens, or a words part's words) start."""
        return self.token_offset if self.words is None else self.words.offset

    def unit_types(self, a: int, b: int, span: str) -> tuple[np.ndarray, np.ndarray]:
        """Return `(ids, pieces)` of every unit of examples `a..b-1`, what the statistics' per-type
        tables and special and punctuation masks read: their tokens, or their words (`words.word_types`)."""
        if self.words is not None:
            return word_types(self, a, b, span)
        t0, t1 = int(self.token_offset[a]), int(self.token_offset[b])
        return self.array("token_ids", slice(t0, t1), span), self.array("tokens", slice(t0, t1), span)

    def examples_frame(self):
        """Return this part's rows of the examples table (without `text`, which only the tables hold)."""
        return self._tables()[0].drop_columns(["text"]).to_pandas()

    def tokens_frame(self):
        """Return this part's rows of the tokens table."""
        return self._tables()[1].to_pandas()

    def _tables(self):
        arrays = {name: self.array(name) for name in PART_ARRAYS}
        return part_tables(arrays, self.part, self.info.special_token_ids, self.failures)


def open_part(location: Location, part: int, info: RootAttrs) -> PartReader:
    """Open one part of the store at `location` for reading, touching nothing else of the store."""
    try:
        group = location.open_group(mode="r", path=part_path(part))
    except Exception as err:
        raise StoreError(f"{location.path}: part {part} cannot be opened: {type(err).__name__}: {err}") from err
    return PartReader(group, part, info)
