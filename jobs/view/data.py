"""What the viewer shows, read from a store lazily: the JSON of each page and one map at a time.

`ViewData` answers the pages' questions (`overview`, `examples`, `example`, `maps`, `top`,
`concordance`) from an opened store and, when given, its aggregate folder. It never reads the
store whole: the overview reads the store's root and the aggregate's tables, the examples page
the examples table (text and length columns, once), an example page one example's maps. The
live server (`jobs.view.server`) and the static build (`jobs.view.build`) both speak through it,
so the two serve the same bytes. It imports no torch (the server starts in a blink).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from vzcore.queries import token_rows, top_examples, word_rows
from vzcore.store.errors import StoreError
from vzcore.store.location import Location
from vzcore.store.reader import Store
from vzcore.tokens import sequence_texts

__all__ = ["MODES", "UNITS", "ViewData", "ViewError", "preview", "records", "rollout"]

MODES = ("layer", "rollout")  # a layer's own map, or the product of the maps up to it
UNITS = ("token", "word")
TEXT_PREVIEW = 240  # characters of an example's text in the examples table
MAX_PAGE = 500  # rows of the examples table per request


class ViewError(ValueError):
    """A request the viewer cannot answer: its HTTP status (400, or 404 for what is not there), never a crash."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def rollout(maps: np.ndarray) -> np.ndarray:
    """Roll `maps: [layers, n, n]` across layers as `vzcore.ops.rollout` does with no identity mixing
    (`R^1 = M^1`, `R^l = M^l @ R^{l-1}`; an unscored row's NaN spreads as it does there), in numpy
    so that the server loads no torch."""
    out = np.empty_like(maps, dtype=np.float64)
    acc = None
    for layer, m in enumerate(maps.astype(np.float64)):
        acc = m if acc is None else m @ acc
        out[layer] = acc
    return out.astype(np.float32)


def preview(text: str | None) -> str | None:
    """An example's text as a table shows it: its first `TEXT_PREVIEW` characters (None where the
    store keeps none: pre-tokenised ids read back as a missing value, NaN, from the table)."""
    if not isinstance(text, str):
        return None
    return text if len(text) <= TEXT_PREVIEW else text[:TEXT_PREVIEW] + "…"


def records(frame) -> list[dict]:
    """Rows of a pandas frame as JSON-ready dicts (NaN as None)."""
    frame = frame.astype(object).where(frame.notna(), None)
    return frame.to_dict(orient="records")


class ViewData:
    """The pages' data of one store (and its aggregate): JSON-ready dicts and float32 map bytes."""

    def __init__(
        self,
        store: Store,
        aggregate: Any | None = None,
        *,
        evaluations: Sequence[str] = (),
        other: ViewData | None = None,
        cache: int = 16,
    ) -> None:
        self.store = store
        self.aggregate = aggregate  # a folder or URL holding `vz aggregate` output, or None
        self.evaluations = list(evaluations)  # `vz evaluate` output folders
        self.other = other  # the store to compare with (same texts), or None
        self._examples = None
        self._results: OrderedDict[int, Any] = OrderedDict()  # the last few examples read (an LRU)
        self._cache = cache
        self._lock = threading.Lock()
        self._reading: dict[tuple, threading.Lock] = {}  # keys being read now
        self._curves: dict | None = None  # the aggregate's curves, read once
        self._top: tuple[dict, Any] | None = None  # the aggregate's summary and top examples
        self._top_read = False

    # ---- overview -------------------------------------------------------------------------------
    def overview(self) -> dict:
        """Model, methods, layers, provenance, parts done; the aggregate's curves when there is one."""
        s = self.store
        return {
            "store": s.path,
            "model": s.config.get("model"),
            "model_type": s.model_type,
            "causal": s.causal,
            "methods": s.methods,
            "layers": s.layers,
            "model_num_layers": s.model_num_layers,
            "examples": s.num_examples,
            "parts": len(s.parts),
            "parts_done": len(s.done_parts()),
            "layout": s.layout,
            "config": s.config,
            "versions": s.versions,
            "identity": s.identity,
            "special_token_ids": s.special_token_ids,
            "aggregate": self._aggregate_curves() if self._curves is None else self._curves,
            "evaluations": len(self.evaluations),
            "compare": None if self.other is None else self.other.store.path,
        }

    def _aggregate_curves(self) -> dict | None:
        """The aggregate's `bucket == 'all'` rows of its layer, distance and agreement tables (read once)."""
        if self.aggregate is None:
            return None
        import pandas as pd

        base = str(self.aggregate).rstrip("/")
        opts = {"storage_options": self.store.storage_options} if "://" in base else {}
        out: dict[str, Any] = {"path": base}
        for name in ("layers", "distance", "agreement"):
            try:
                frame = pd.read_parquet(f"{base}/{name}.parquet", **opts)
            except FileNotFoundError:
                out[name] = []
                continue
            out[name] = records(frame[frame["bucket"] == "all"].drop(columns="bucket"))
        self._curves = out  # an aggregate is written whole, once: a new one needs a restart
        return out

    def top_table(self) -> tuple[dict, Any] | None:
        """The aggregate's `summary.json` and `top_examples.parquet` (read once), or None without them."""
        if not self._top_read:
            self._top_read = True  # an aggregate is written whole, once: a new one needs a restart
            if self.aggregate is not None:
                import pandas as pd

                location = Location(str(self.aggregate).rstrip("/"), self.store.storage_options)
                try:
                    with location.open_file("summary.json") as f:
                        summary = json.load(f)
                    with location.open_file("top_examples.parquet") as f:
                        frame = pd.read_parquet(f)
                except FileNotFoundError:  # an aggregate from before the table, or made with --top-examples 0
                    pass
                else:
                    self._top = (summary, frame)
        return self._top

    # ---- examples table -------------------------------------------------------------------------
    def _table(self):
        """The examples table's id, status, length and text columns, read once and kept."""
        with self._lock:
            if self._examples is None:
                columns = ["example_id", "status", "length", "truncated"]
                if self.store.has_tables():
                    frame = self.store.table("examples", columns=[*columns, "text"]).to_pandas()
                else:
                    frame = self.store.examples_table()
                    frame["text"] = None
                self._examples = frame.sort_values("example_id", ignore_index=True)
            return self._examples

    def examples(
        self,
        *,
        q: str = "",
        min_len: int | None = None,
        max_len: int | None = None,
        sort: str = "example_id",
        desc: bool = False,
        offset: int = 0,
        limit: int = 50,
        ids: Sequence[int] | None = None,
    ) -> dict:
        """One page of the examples table, filtered by text (case-insensitive substring) and length."""
        frame = self._table()
        if sort not in ("example_id", "length"):
            raise ViewError(f"cannot sort by {sort!r}; choose example_id or length")
        keep = np.ones(len(frame), dtype=bool)
        if q:
            keep &= frame["text"].fillna("").str.contains(q, case=False, regex=False).to_numpy()
        if min_len is not None:
            keep &= frame["length"].to_numpy() >= min_len
        if max_len is not None:
            keep &= frame["length"].to_numpy() <= max_len
        if ids is not None:
            keep &= frame["example_id"].isin(list(ids)).to_numpy()
        hits = frame[keep]
        if sort != "example_id" or desc:
            hits = hits.sort_values([sort, "example_id"], ascending=[not desc, True], kind="stable")
        limit = max(1, min(int(limit), MAX_PAGE))
        page = hits.iloc[max(0, int(offset)) : max(0, int(offset)) + limit].copy()
        page["text"] = page["text"].map(preview)
        return {"total": len(hits), "offset": int(offset), "rows": records(page)}

    def top(self, statistic: str, method: str, layer: int, k: int = 20, deciles: bool = False) -> dict:
        """The `k` examples highest on a per-example statistic (`vzcore.queries.top_examples`)."""
        try:
            frame = top_examples(self.store, statistic, method, int(layer), k=int(k))
        except StoreError as err:
            raise ViewError(str(err)) from err
        frame["text"] = frame["text"].map(preview)
        return {"statistic": statistic, "method": method, "layer": int(layer), "rows": records(frame)}

    # ---- one example ----------------------------------------------------------------------------
    def _cached(self, key: tuple, make):
        """Return `make()` kept under `key` among the last few read (an LRU: an example page asks
        for one method's layers one at a time, and comes back to them). Requests for the same key
        at once (the page fetches an example's tokens and its first map together) read it once."""
        with self._lock:
            if key in self._results:
                self._results.move_to_end(key)
                return self._results[key]
            reading = self._reading.setdefault(key, threading.Lock())
        with reading:
            with self._lock:
                if key in self._results:
                    return self._results[key]
            try:
                value = make()
            except BaseException:
                with self._lock:
                    self._reading.pop(key, None)
                raise
            with self._lock:
                self._results[key] = value
                self._reading.pop(key, None)
                while len(self._results) > self._cache:
                    self._results.popitem(last=False)
        return value

    def _result(self, example_id: int, method: str):
        """One example with one method's maps (only that method's values are read)."""
        if method not in self.store.methods:
            raise ViewError(f"no method {method!r}; the store holds {', '.join(self.store.methods)}", 404)

        def read():
            try:
                return self.store.example(example_id, [method])
            except StoreError as err:
                raise ViewError(str(err), 404) from err

        return self._cached((example_id, method, "token"), read)

    def _words(self, example_id: int, method: str):
        return self._cached((example_id, method, "word"), lambda: self._result(example_id, method).word_level())

    def example(self, example_id: int) -> dict:
        """One example's tokens and words (display texts, special flags), without its maps."""
        r = self._result(int(example_id), self.store.methods[0])
        special = set(self.store.special_token_ids)
        words = replace(r, scores={}).word_level()  # the word labels alone: no map is grouped
        return {
            "example_id": int(example_id),
            "text": r.text,
            "truncated": bool(r.truncated),
            "methods": self.store.methods,
            "layers": r.layers,
            "tokens": sequence_texts(r.tokens),
            "pieces": list(r.tokens),
            "special": [int(t) in special for t in r.token_ids],
            "words": list(words.words),
            "word_special": [all(int(r.token_ids[k]) in special for k in ks) for ks in self._word_index(r)],
        }

    @staticmethod
    def _word_index(r) -> list[list[int]]:
        """The tokens of each unit of `ScoreResult.word_level`, in its order."""
        units: dict[tuple, list[int]] = {}
        for k, w in enumerate(r.word_ids or [None] * r.n):
            units.setdefault(("word", w) if w is not None else ("token", k), []).append(k)
        return list(units.values())

    def maps(self, example_id: int, method: str, layer: int, unit: str = "token", mode: str = "layer") -> np.ndarray:
        """One `[n, n]` float32 map (target rows, source columns) of one method at one stored layer."""
        if unit not in UNITS or mode not in MODES:
            raise ViewError(f"unit is one of {UNITS}, mode one of {MODES}")
        r = self._result(int(example_id), method)
        if int(layer) not in r.layers:
            raise ViewError(f"no layer {layer}; the store holds {r.layers}", 404)
        li = r.layers.index(int(layer))
        maps = (self._words(int(example_id), method) if unit == "word" else r).scores[method]
        m = rollout(maps[: li + 1])[li] if mode == "rollout" else maps[li]
        return np.ascontiguousarray(m, dtype="<f4")

    # ---- concordance ----------------------------------------------------------------------------
    def concordance(
        self, method: str, layer: int, *, word: str = "", token: str = "", limit: int = 100, max_offset: int = 8
    ) -> dict:
        """Every occurrence of a word (or a raw token) at `layer` with the row it receives
        (`vzcore.queries.word_rows` / `token_rows`), and their mean source profile: by relative
        position (`source - target`, clipped to `±max_offset`) and by source type (the 20 heaviest)."""
        if bool(word) == bool(token):
            raise ViewError("give word= or token=, one of them")
        try:
            if word:
                rows = word_rows(self.store, word, int(layer), method, ignore_case=True)
                rows = rows.rename(
                    columns={
                        "word_position": "position",
                        "source_word_position": "source_position",
                        "source_word": "source",
                    }
                )
            else:
                rows = token_rows(self.store, token, int(layer), method).rename(columns={"source_token": "source"})
        except StoreError as err:
            raise ViewError(str(err)) from err
        keys = ["example_id", "position"]
        groups = rows.groupby(keys, sort=True)
        count = groups.ngroups
        offset = (rows["source_position"] - rows["position"]).clip(-max_offset, max_offset)
        by_offset = rows.assign(offset=offset).groupby("offset")["weight"].sum() / max(count, 1)
        by_type = (rows.groupby("source")["weight"].sum() / max(count, 1)).sort_values(ascending=False).head(20)
        occurrences = [
            {
                "example_id": int(eid),
                "position": int(pos),
                "sources": [str(s) for s in g["source"]],
                "weights": [float(w) for w in g["weight"]],
            }
            for (eid, pos), g in list(groups)[: max(1, min(int(limit), MAX_PAGE))]
        ]
        return {
            "query": word or token,
            "unit": "word" if word else "token",
            "method": method,
            "layer": int(layer),
            "count": count,
            "by_offset": [[int(k), float(v)] for k, v in by_offset.items()],
            "by_type": [[str(k), float(v)] for k, v in by_type.items()],
            "occurrences": occurrences,
        }
