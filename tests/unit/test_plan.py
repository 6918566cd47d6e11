"""Parts sized by the maps they hold: bounded bytes, deterministic, and stable as the corpus grows."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from jobs.score.plan import plan_parts, replan_from
from vzcore.store.layout import packed_size


def _values(plan, lengths, layers, causal):
    return [sum(packed_size(int(n), int(n), layers, causal) for n in lengths[p["start"] : p["stop"]]) for p in plan]


@pytest.mark.parametrize("causal", [False, True])
def test_parts_hold_at_most_the_budget_and_cover_every_row_once(causal):
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 60, 5000)
    lengths[100] = 3000  # one example larger than a whole part: a part of its own
    plan = plan_parts(lengths, layers=6, causal=causal, part_mb=1.0)
    assert [p["part"] for p in plan] == list(range(len(plan)))
    assert plan[0]["start"] == 0 and plan[-1]["stop"] == 5000
    assert all(a["stop"] == b["start"] for a, b in itertools.pairwise(plan))
    budget = 2**20 / 2
    values = _values(plan, lengths, 6, causal)
    for p, v in zip(plan, values, strict=True):
        assert v <= budget or p["stop"] - p["start"] == 1
    # Greedy: adding the next part's first example would have passed the budget.
    for v, nxt in zip(values, plan[1:], strict=False):
        n = int(lengths[nxt["start"]])
        assert v + packed_size(n, n, 6, causal) > budget
    assert any(p["start"] == 100 and p["stop"] == 101 for p in plan)


def test_a_longer_corpus_keeps_every_earlier_part_and_a_cap_on_examples_holds():
    lengths = np.random.default_rng(1).integers(1, 40, 3000)
    kw = dict(layers=2, causal=False, part_mb=0.25)
    for size in (None, 50):  # the default spread of a short run, and a cap on examples
        short = plan_parts(lengths[:1000], part_size=size, **kw)
        # Planning from the stored plan (as a rerun does): the parts before the last stay as they were.
        kept, start, last = replan_from(short)
        grown = kept + plan_parts(
            lengths[start:], part_size=size, start=start, first_part=len(kept), at_least=last, **kw
        )
        assert grown[: len(kept)] == kept and grown[-1]["stop"] == 3000
        assert all(a["stop"] == b["start"] for a, b in itertools.pairwise(grown))
        # The same rows again (a rerun of the same command) plan exactly the stored parts.
        again = kept + plan_parts(
            lengths[start:1000], part_size=size, start=start, first_part=len(kept), at_least=last, **kw
        )
        assert again == short
    capped = plan_parts(lengths, layers=2, causal=False, part_mb=64.0, part_size=7)
    assert max(p["stop"] - p["start"] for p in capped) == 7 and capped[-1]["stop"] == 3000
    assert plan_parts([], layers=2, causal=False) == []


def test_a_short_run_is_spread_over_parts_and_a_rerun_keeps_its_stored_plan():
    """Without --part-size a short run is cut into 8 parts (every actor takes a share); a rerun re-plans
    only the last stored part and no smaller than it was, so a store planned by MiB alone (before the
    spread existed) keeps its one part, and a spread store its eight."""
    lengths = np.full(200, 10)
    kw = dict(layers=6, causal=False)
    spread = plan_parts(lengths, **kw)
    assert [p["stop"] - p["start"] for p in spread] == [25] * 8
    assert [p["stop"] - p["start"] for p in plan_parts(lengths[:12], **kw)] == [4, 4, 4]  # parts of at least 4
    for stored in (spread, [{"part": 0, "start": 0, "stop": 200}]):  # spread, and planned by MiB alone
        kept, start, last = replan_from(stored)
        assert kept + plan_parts(lengths[start:], start=start, first_part=len(kept), at_least=last, **kw) == stored
    assert replan_from([]) == ([], 0, 0)


@pytest.mark.parametrize("model", ["tiny_model_dir", "tiny_smollm2_dir"])
def test_token_counts_are_the_tokenizers_own(request, model):
    import transformers

    from jobs.score.plan import token_lengths

    tok = transformers.AutoTokenizer.from_pretrained(request.getfixturevalue(model))
    texts = ["Hello there, how are you?", "", "   ", None, "A longer sentence, with café and 日本.", "ok"] * 300
    lengths, truncated = token_lengths(tok, texts, 8)
    want = [len(tok(t)["input_ids"]) if isinstance(t, str) and t.strip() else 0 for t in texts]
    assert lengths.tolist() == [min(n, 8) for n in want]
    assert truncated == sum(n > 8 for n in want) > 0


def test_the_estimate_does_not_overflow_on_numpy_counts():
    from jobs.score.plan import estimate

    kw = dict(layers=30, hidden=576, ffn=1536, causal=True, methods=["value_zeroing"], itemsize=2)
    counts = np.full(100_000, 300, dtype=np.int32)
    assert estimate(counts, **kw) == estimate([300] * 100_000, **kw)


def test_a_reduced_store_is_planned_by_what_it_keeps():
    from vzcore.store.forms import StoreForm

    lengths = [2000] * 40 + [10] * 5
    dense = plan_parts(lengths, layers=4, causal=False, part_mb=1.0)
    assert [p["stop"] - p["start"] for p in dense][:3] == [1, 1, 1]  # 2000² · 4 values: one example a part
    # top-8: 2000 rows · 4 layers · (2 · 8 + 4) values = 160,000 a text: 3 texts in 524,288 values
    top = plan_parts(lengths, layers=4, causal=False, part_mb=1.0, form=StoreForm("top-k"))
    assert [p["stop"] - p["start"] for p in top][:2] == [3, 3]
    auto = StoreForm("auto", dense_max_tokens=1024)
    assert plan_parts(lengths, layers=4, causal=False, part_mb=1.0, form=auto) == top
    # --targets last: one row of 2000 values a layer, 8,000 a text: 65 texts fit (no spread: a cap above 45)
    last = plan_parts(lengths, layers=4, causal=False, part_mb=1.0, last_row_only=True, part_size=100)
    assert len(last) == 1 and last[0]["stop"] == 45
