"""Arithmetic precision of the pair computations: float32 by default, lower only when asked."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial

import torch

__all__ = ["PRECISIONS", "keep_casts", "precision_context"]

PRECISIONS = ("float32", "bfloat16", "tf32")


@contextmanager
def _tf32():
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def precision_context(precision: str, device: torch.device) -> Callable[[], AbstractContextManager] | None:
    """Return a factory of contexts for the pair arithmetic at `precision`, or `None` for full float32."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from: {', '.join(PRECISIONS)}")
    if precision == "bfloat16":
        return partial(torch.autocast, device_type=device.type, dtype=torch.bfloat16)
    if precision == "tf32":
        if device.type != "cuda":
            raise ValueError("precision 'tf32' needs a CUDA device; use 'bfloat16' on CPUs")
        return _tf32
    return None


def keep_casts(precision: Callable[[], AbstractContextManager] | None) -> AbstractContextManager:
    """Return a context, around many calls under `precision`, that keeps the weights autocast cast
    to bfloat16 until it closes, where each call's own context would cast them again.

    Autocast drops its cast copies when its outermost context exits. Entered per chunk of pairs,
    the down projection's weight was cast again for every chunk and again for the clean rows: on
    short texts (few pairs per chunk) that cast cost as much as the bfloat16 matmul saved. This
    outer context is autocast switched off, so nothing else inside runs in lower precision.
    """
    if isinstance(precision, partial) and precision.func is torch.autocast:
        return precision(enabled=False)
    return nullcontext()
