"""One block seen through its family's spec and its clean capture: what the methods ask of a block.

The value-zeroing fast path and the norm-based methods never read a spec's norm positions or
rebuild a block's states from its captures themselves; they ask this view. It answers from the
spec's `BlockShape` (a norm's kind is data, never guessed from its module's type) and refuses,
naming the family and what it lacks, a shape whose answer it does not know exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from vzcore.capture import LayerCapture
from vzcore.families import POST_NORM, PRE_NORM, FamilySpec, Layout, Norm, linear_params
from vzcore.ops.norms import NormParams
from vzcore.ops.pairs import gather_rows

__all__ = ["BlockView", "LinearNorm", "UnsupportedBlockError", "unsupported_shape"]


class UnsupportedBlockError(ValueError):
    """A block shape the scoring algebra has no exact form for (scoring it would be a guess)."""


def unsupported_shape(spec: FamilySpec) -> str:
    """Return what makes `spec`'s block shape unknown, naming the family: `gemma2 blocks have ...`."""
    return f"{spec.name} blocks have {', '.join(spec.shape.unsupported())}"


@dataclass(frozen=True)
class LinearNorm:
    """A norm made linear at the clean statistics of its input rows: `v ↦ scale ⊙ C v · inv`.

    β (and the part of `b_O` it normalises) belongs to no source and is left out.
    """

    params: NormParams
    inv: torch.Tensor  # `[b, n, 1]` (float64): `1/σ` (LayerNorm) or `1/rms` of each clean input row

    @classmethod
    def at(cls, params: NormParams, s: torch.Tensor) -> LinearNorm:
        """The norm `params` linearised at the statistics of its clean inputs `s: [b, n, d]`."""
        return cls(params, params.inverse_scale(s.double()))

    def __call__(self, v: torch.Tensor, texts: slice, rows: torch.Tensor) -> torch.Tensor:
        """Return the linear part of vectors `v: [b', t', n, d]` of target `rows: [b', t']` of `texts` (float64)."""
        return self.params.linear(v.double(), gather_rows(self.inv[texts], rows)[:, :, None])


@dataclass
class BlockView:
    """One block (`b` texts, `n` positions, `H` query heads) with its family's spec and clean capture."""

    spec: FamilySpec
    block: Any  # the block module: its submodules are reached by the spec's paths
    cap: LayerCapture

    @property
    def layout(self) -> Layout:
        """Return the block's layout; raise `UnsupportedBlockError` for a shape no layout covers."""
        layout = self.spec.shape.layout
        if layout is None:
            raise UnsupportedBlockError(unsupported_shape(self.spec))
        return layout

    def params(self, norm: Norm) -> NormParams:
        """Return the parameters of one of the block's norms, by the kind its spec gives."""
        return NormParams.of(norm, self.block.get_submodule(norm.path))

    def head_values(self) -> torch.Tensor:
        """Return the value vectors per query head `[b, n, H, d_h]` (a key/value head serves its whole group)."""
        heads = self.cap.attn.shape[1]
        return self.cap.values.repeat_interleave(heads // self.cap.values.shape[2], dim=2)

    def projected_values(self) -> torch.Tensor:
        """Return each source's part of the attention output per head, `u_j^h = v_j^h W_O^h`: `[b, n, H, d]`."""
        heads = self.cap.attn.shape[1]
        w_o, _ = linear_params(self.block.get_submodule(self.spec.out_proj))  # `[d, H·d_h]`
        # contiguous: the fast path's chunks reshape it to `[b·n, H, d]`, which must not copy
        return torch.einsum("bjhk,dhk->bjhd", self.head_values(), w_o.unflatten(1, (heads, -1))).contiguous()

    @cached_property
    def state_after_attention(self) -> torch.Tensor:
        """Return the clean state after attention `s = x + attn_out` `[b, n, d]` (the attention output
        through its own norm where the shape has one)."""
        shape = self.spec.shape
        if shape.parallel:
            raise UnsupportedBlockError(f"{unsupported_shape(self.spec)}: no state after attention alone")
        out = self.cap.attn_out
        if shape.on_attn_out is not None:
            out = self.block.get_submodule(shape.on_attn_out.path)(out)
        return self.cap.x + out

    @property
    def mix_norm(self) -> Norm:
        """The norm that follows attention, reading `s`: on the sum (post-norm), or before the feed-forward."""
        norm = self.spec.shape.mix_norm
        if norm is None or self.spec.shape.layout not in (POST_NORM, PRE_NORM):
            raise UnsupportedBlockError(f"{self.spec.name} blocks have {self._why_not_linear()}")
        return norm

    def _why_not_linear(self) -> str:
        """Say why the state after attention reaches no single norm linearly (sandwich, parallel, unknown)."""
        why = self.spec.shape.unsupported()
        if why:
            return ", ".join(why)
        shape = self.spec.shape
        if shape.parallel:
            return "attention and feed-forward running in parallel"
        outs = (("attention output", shape.on_attn_out), ("feed-forward output", shape.on_ffn_out))
        return ", ".join(f"a norm on the {what} ({norm.path})" for what, norm in outs if norm is not None)

    def mix_params(self) -> NormParams:
        return self.params(self.mix_norm)

    def mix_linear(self) -> LinearNorm:
        """The norm that follows attention, linearised at its clean statistics (those of `s`)."""
        return LinearNorm.at(self.mix_params(), self.state_after_attention)

    def mix_output(self, s: torch.Tensor) -> torch.Tensor:
        """Return the norm that follows attention applied to sums `s: [..., d]` by the model's own module."""
        return self.block.get_submodule(self.mix_norm.path)(s)

    def ffn_residual(self, s: torch.Tensor) -> torch.Tensor:
        """Return what the feed-forward's output is added to, from sums `s: [..., d]`: the normed sums
        (post-norm) or the sums themselves (pre-norm)."""
        return self.mix_output(s) if self.mix_norm == self.spec.shape.after_attn_sum else s

    def after_attention(
        self, x: torch.Tensor, attn_out: torch.Tensor, precision: Callable[[], AbstractContextManager] | None = None
    ) -> torch.Tensor:
        """Return the block output from inputs `x: [p, d]` and attention outputs `attn_out: [p, d]` (after
        `W_O`) of a sequential block, by the block's own modules: its norms, residual adds and feed-forward.

        The feed-forward (a mixture of experts routes each row by itself) sees `[1, p, d]`; it alone runs
        under `precision` (lower, when asked for), as the factored path's down projection does.
        """
        shape, ffn = self.spec.shape, self.spec.ffn
        if shape.parallel or ffn is None:
            raise UnsupportedBlockError(f"{self.spec.name} blocks have no feed-forward module to run after attention")

        def norm(where: Norm | None, v: torch.Tensor) -> torch.Tensor:
            return v if where is None else self.block.get_submodule(where.path)(v)

        r = norm(shape.after_attn_sum, x + norm(shape.on_attn_out, attn_out))
        with precision() if precision else nullcontext():
            f = self.block.get_submodule(ffn)(norm(shape.before_ffn, r)[None])
        f = (f[0] if isinstance(f, tuple) else f)[0].to(r.dtype)  # MoE blocks may return router logits too
        return norm(shape.after_ffn_sum, r + norm(shape.on_ffn_out, f))

    def closing_linear(self) -> LinearNorm:
        """The norm closing the block (on the feed-forward sum), linearised at its captured clean input."""
        norm = self.spec.shape.after_ffn_sum
        if norm is None or self.cap.closing_in is None:
            raise UnsupportedBlockError(f"{self.spec.name} blocks have no norm closing the feed-forward sum")
        return LinearNorm.at(self.params(norm), self.cap.closing_in)
