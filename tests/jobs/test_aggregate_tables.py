"""The aggregate's tables, built for all rows at once (`jobs.aggregate.report.stats_tables`), equal a plain
row-by-row reference written from their definitions (`SCHEMA`)."""

from __future__ import annotations

import pytest

pytest.importorskip("pandas")
pytest.importorskip("zarr")

import pandas as pd

from jobs.aggregate.driver import PartJob, aggregate_part
from jobs.aggregate.report import SCHEMA, stats_tables
from tests.harness.synthetic_store import write_random_store
from vzcore.statistics import PartialStats, StatsSpec
from vzcore.statistics.partial import TYPE_SUMS
from vzcore.store.reader import open_store
from vzcore.tokens import token_text, vocabulary_scheme


def _mean(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _reference(stats: PartialStats, layers: list[int], near_max: int, top: int) -> dict[str, object]:
    """One dict per row, each value computed on its own from the sums."""
    spec, s = stats.spec, stats.sums
    labels = ["all", *spec.bucket_labels()]

    def pick(a, bi):  # the bucket "all" sums every bucket
        return a.sum(1) if bi == 0 else a[:, bi - 1]

    rows, dist, agree = [], [], []
    for bi, label in enumerate(labels):
        ex = int(s["examples"].sum() if bi == 0 else s["examples"][bi - 1])
        for mi, method in enumerate(spec.methods):
            for li, layer in enumerate(layers):
                r = pick(s["rows"], bi)[mi, li]
                om, oc = pick(s["offset_mass"], bi)[mi, li], pick(s["offset_count"], bi)[mi, li]
                by = {int(o): om[k] for k, o in enumerate(spec.offsets())}
                row = {"method": method, "layer": layer, "bucket": label, "examples": ex, "rows": int(r)}
                for k in ("self_mass", "context_mass", "special_mass", "punct_mass"):
                    row[k] = _mean(pick(s[k], bi)[mi, li], r)
                row["prev_mass"] = _mean(by[-1], r)
                row["next_mass"] = _mean(by[1], r)
                row["near_mass"] = _mean(sum(v for o, v in by.items() if 2 <= abs(o) <= near_max), r)
                row["far_mass"] = _mean(sum(v for o, v in by.items() if abs(o) > near_max), r)
                row["entropy"] = _mean(pick(s["entropy_sum"], bi)[mi, li], pick(s["entropy_rows"], bi)[mi, li])
                for k in ("entropy_rows", "single_rows", "zero_rows"):
                    row[k] = int(pick(s[k], bi)[mi, li])
                rows.append(row)
                for k, o in enumerate(spec.offsets()):
                    dist.append(
                        {
                            "method": method,
                            "layer": layer,
                            "bucket": label,
                            "offset": int(o),
                            "overflow": k in (0, len(spec.offsets()) - 1),
                            "mass": _mean(om[k], r),
                            "mass_per_entry": _mean(om[k], oc[k]),
                            "entries": int(oc[k]),
                        }
                    )
        for pi, (a, c) in enumerate(spec.pairs):
            for li, layer in enumerate(layers):
                count = pick(s["agree_count"], bi)[pi, li]
                agree.append(
                    {
                        "method_a": a,
                        "method_b": c,
                        "layer": layer,
                        "bucket": label,
                        "sentences": int(count),
                        "spearman": _mean(pick(s["agree_sum"], bi)[pi, li], count),
                    }
                )
    t = dict(zip(TYPE_SUMS, stats.type_sums, strict=True))
    counts = t["kept_count"].sum((0, 1))
    order = sorted(range(len(stats.type_ids)), key=lambda u: -counts[u])[:top]  # stable: ties keep id order
    scheme = vocabulary_scheme(list(stats.type_tokens.values()))
    types = []
    for u in order:
        tid = int(stats.type_ids[u])
        token = stats.type_tokens[tid]
        for mi, method in enumerate(spec.methods):
            for li, layer in enumerate(layers):
                types.append(
                    {
                        "method": method,
                        "layer": layer,
                        "token_id": tid,
                        "token": token,
                        "text": token_text(token, scheme),
                        "count": int(t["kept_count"][mi, li, u]),
                        "kept": _mean(t["kept_sum"][mi, li, u], t["kept_count"][mi, li, u]),
                        "given": _mean(t["given_sum"][mi, li, u], t["given_count"][mi, li, u]),
                    }
                )
    return {
        "layers.parquet": rows,
        "distance.parquet": dist,
        "agreement.parquet": agree,
        "token_types.parquet": types,
    }


def _stats(tmp_path, methods, causal: bool) -> tuple[PartialStats, list[int]]:
    path = tmp_path / "s.zarr"
    write_random_store(
        path, 40, methods=methods, num_layers=3, causal=causal, part_size=15, lengths=(2, 40), vocab=60, fail_every=9
    )
    store = open_store(path)
    spec = StatsSpec(tuple(methods), 3, causal, bucket_edges=(1, 8, 16, 128), max_offset=4)
    total = PartialStats(spec)
    for part in store.done_parts():
        total.merge(aggregate_part(None, PartJob(store.location, store.info, part, spec)))
    return total, store.layers


@pytest.mark.parametrize(
    "methods,causal",
    [(("value_zeroing", "attention", "attention_norm"), False), (("value_zeroing", "attention"), True)],
)
def test_tables_equal_row_by_row_reference(tmp_path, methods, causal):
    stats, layers = _stats(tmp_path, methods, causal)
    stats.sums["rows"][0, 3] = 0  # an empty bucket: its means are NaN, not a division by zero
    got = stats_tables(stats, layers, near_max=2, top_types=25)
    want = _reference(stats, layers, near_max=2, top=25)
    # the top examples' table is written only when the spec keeps them (tests/jobs/test_aggregate_top.py)
    assert set(got) == set(want) == set(SCHEMA) - {"top_examples.parquet"}
    for name, rows in want.items():
        frame = got[name]
        assert set(frame.columns) == set(SCHEMA[name]), name
        expected = pd.DataFrame(rows)  # columns in the order the reference writes them: the files' order
        assert len(frame) == len(expected) > 0, name
        pd.testing.assert_frame_equal(frame, expected, check_exact=False, rtol=1e-14, atol=0, obj=name)
    assert got["layers.parquet"]["self_mass"].isna().any()  # the emptied bucket


def test_one_method_has_an_empty_agreement_table(tmp_path):
    stats, layers = _stats(tmp_path, ("value_zeroing",), False)
    got = stats_tables(stats, layers, near_max=2, top_types=5)
    assert got["agreement.parquet"].empty
    assert list(got["agreement.parquet"].columns) == list(SCHEMA["agreement.parquet"])
    assert got["token_types.parquet"]["token_id"].nunique() == 5
    assert len(got["layers.parquet"]) == 5 * len(layers)  # "all" and 4 buckets
