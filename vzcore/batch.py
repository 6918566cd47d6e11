"""One padded batch after its clean pass: what every method computes from."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

import torch

from vzcore.capture import LayerCapture
from vzcore.loading import ModelHandle
from vzcore.ops.block import BlockView

__all__ = ["Batch"]


@dataclass
class Batch:
    """Clean captures of a padded batch of `b` texts and the target rows to score.

    The bookkeeping tensors (`lengths`, `rows`, `row_mask`) live on the CPU, so deciding what to
    compute never waits for the accelerator; captures live on the model's device.
    """

    handle: ModelHandle
    # block index -> clean tensors: the batch's `layers`, and for a rollout's base every layer up to
    # them; a batch scored in groups of layers (`vzcore.scoring`) holds one group's
    captures: dict[int, LayerCapture]
    lengths: torch.Tensor  # tokens per text `[b]` (CPU)
    rows: torch.Tensor  # target row indices `[b, t]`, padded with 0 (CPU)
    row_mask: torch.Tensor  # which entries of `rows` are real targets `[b, t]` (CPU)
    layers: list[int]  # the blocks to report, in order
    memory_budget: int  # bytes for one chunk of pairs
    precision: Callable[[], AbstractContextManager] | None = None  # lower-precision context, when asked for
    memo: dict = field(default_factory=dict)  # results shared between methods of this batch
    input_ids: torch.Tensor | None = None  # the padded batch `[b, n]` (model's device), for methods that rerun it
    attention_mask: torch.Tensor | None = None  # `[b, n]`, 1 on real tokens (model's device)

    @property
    def n(self) -> int:
        if self.input_ids is not None:
            return self.input_ids.shape[1]
        return next(iter(self.captures.values())).x.shape[1]

    @property
    def causal(self) -> bool:
        return self.handle.family.causal

    def all_rows(self, layers: list[int] | None = None) -> Batch:
        """The same batch with every position as a target (what rollouts need), reporting `layers`
        (default: the same layers)."""
        b, n = self.lengths.shape[0], self.n
        rows = torch.arange(n).expand(b, n)
        mask = rows < self.lengths[:, None]
        return Batch(
            self.handle,
            self.captures,
            self.lengths,
            rows,
            mask,
            self.layers if layers is None else layers,
            self.memory_budget,
            self.precision,
            self.memo,
            self.input_ids,
            self.attention_mask,
        )

    def block(self, layer: int) -> BlockView:
        """Return one block's view (its spec, module and clean capture): what methods ask of a block.

        Nothing of it is memoised across calls: `u_j^h` costs one projection per token
        (`n · d · H · d_h`, below every method's `H · n² · d`), while keeping it for every layer of a
        batch would hold `H ×` the hidden states beside the captures, outside the memory budget.
        """
        spec = self.handle.family
        return BlockView(spec, spec.blocks(self.handle.model)[layer], self.captures[layer])

    def valid_pairs(self, rows: torch.Tensor, row_mask: torch.Tensor) -> torch.Tensor:
        """Return `[b, t, n]` (CPU): which (target, source) pairs exist (in length; causal: `j <= i`)."""
        cols = torch.arange(self.n)
        valid = row_mask[:, :, None] & (cols[None, None, :] < self.lengths[:, None, None])
        if self.causal:
            valid &= cols[None, None, :] <= rows[:, :, None]
        return valid

    def attention_rows(self, layer: int, rows: torch.Tensor) -> torch.Tensor:
        """Return the clean attention weights of target `rows: [b, t]`: `[b, H, t, n]`."""
        attn = self.captures[layer].attn
        rows = rows.to(attn.device)
        index = rows[:, None, :, None].expand(-1, attn.shape[1], -1, attn.shape[-1])
        return torch.gather(attn, 2, index)

    def place_rows(self, values: torch.Tensor) -> torch.Tensor:
        """Scatter per-target rows `[b, L, t, n]` into full maps `[b, L, n, n]` (CPU), NaN where unscored."""
        values = values.cpu()
        b, layers, _, n = values.shape
        out = values.new_full((b, layers, n, n), float("nan"))
        for k in range(b):
            r = self.rows[k][self.row_mask[k]]
            out[k, :, r] = values[k][:, self.row_mask[k]]
        return out
