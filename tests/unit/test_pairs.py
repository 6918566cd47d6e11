"""Chunks of (target, source) pairs: every visible pair once, none invisible, each chunk within the budget."""

from __future__ import annotations

import pytest
import torch

from vzcore.ops.pairs import visible_pair_chunks


def _reach(lengths: list[int], t: int, causal: bool) -> torch.Tensor:
    """The plain definition: target row r of text k sees sources j < length_k (and j ≤ r when causal)."""
    reach = torch.zeros(len(lengths), t, dtype=torch.long)
    for k, n in enumerate(lengths):
        for r in range(min(t, n)):
            reach[k, r] = r + 1 if causal else n
    return reach


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("cap", [1, 5, 40, 10_000])
def test_chunks_cover_every_visible_pair_once_within_the_budget(causal, cap):
    lengths, t, bpp = [11, 4, 9], 11, 8
    reach = _reach(lengths, t, causal)
    seen = torch.zeros(len(lengths), t, t, dtype=torch.long)
    chunks = visible_pair_chunks(reach, bpp, cap * bpp)
    for texts, rows, src in chunks:
        computed = (texts.stop - texts.start) * (rows.stop - rows.start) * (src.stop - src.start)
        assert computed <= cap or (texts.stop - texts.start, rows.stop - rows.start) == (1, 1)
        # the sources computed are exactly those the chunk's rows can see, no more
        assert src.start == 0 and src.stop == max(1, int(reach[texts, rows].max()))
        seen[texts, rows, src] += 1
    visible = torch.arange(t)[None, None, :] < reach[:, :, None]
    assert (seen[visible] == 1).all()  # every visible pair in exactly one chunk
    assert (seen <= 1).all()


def test_causal_rows_compute_about_half_the_pairs():
    t = 64
    reach = _reach([t], t, causal=True)
    chunks = visible_pair_chunks(reach, 1, 300)
    computed = sum((r.stop - r.start) * s.stop for _, r, s in chunks)
    assert len(chunks) > 5
    assert computed < 0.6 * t * t  # t(t+1)/2 = 2080 visible of 4096, plus the chunks' small triangles


def test_whole_texts_group_when_they_fit():
    reach = _reach([5, 3, 5, 2], 5, causal=False)
    whole = (slice(0, 5), slice(0, 5))
    assert visible_pair_chunks(reach, 1, 50) == [(slice(0, 2), *whole), (slice(2, 4), *whole)]
