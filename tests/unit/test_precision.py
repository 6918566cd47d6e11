"""Lower precision: the weights autocast casts are kept across the calls of one `keep_casts` context."""

from __future__ import annotations

from contextlib import nullcontext

import torch
from torch.profiler import ProfilerActivity, profile

from vzcore.precision import keep_casts, precision_context


def _casts_and_outputs(outer: bool) -> tuple[int, list[torch.Tensor]]:
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 32)  # parameters require grad, as a loaded model's do
    xs = [torch.randn(8, 64) for _ in range(3)]
    low = precision_context("bfloat16", torch.device("cpu"))
    assert low is not None
    outs = []
    outer_context = keep_casts(low) if outer else nullcontext()
    with profile(activities=[ProfilerActivity.CPU]) as prof, torch.no_grad(), outer_context:
        for x in xs:  # one context per call, as each chunk of pairs enters its own
            with low():
                outs.append(layer(x).float())
    casts = sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy")
    return casts, outs


def test_weights_are_cast_once_per_context_and_results_do_not_change():
    kept, with_outer = _casts_and_outputs(outer=True)
    every, without = _casts_and_outputs(outer=False)
    # three inputs cast each time; weight and bias once with the outer context, three times without
    assert every - kept == 4
    for a, b in zip(with_outer, without, strict=True):
        assert torch.equal(a, b)
        assert a.dtype == torch.float32


def test_keep_casts_runs_nothing_in_lower_precision_itself():
    low = precision_context("bfloat16", torch.device("cpu"))
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with keep_casts(low):
        assert (a @ b).dtype == torch.float32
    with keep_casts(None):
        assert (a @ b).dtype == torch.float32
