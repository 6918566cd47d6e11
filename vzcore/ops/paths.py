"""Which exact value-zeroing path a block takes, and the two that need no algebra of its feed-forward.

Every path starts from the same exact correction of the attention output (`vzcore.ops.zeroing`):
`attn_out_i^{¬j} = attn_out_i − Δ_ij`. They differ in how much of the rest of the block runs per pair:

- `factored` (post-norm and pre-norm blocks with plain feed-forwards): the feed-forward's input
  projections are factored through the norm that follows (`zeroed_block_outputs`); per pair only the
  activation and down projection run.
- `parallel` (attention and feed-forward both read the block input: GPT-NeoX, GPT-J, Phi): the
  feed-forward never sees the zeroed values, so `y_i^{¬j} = y_i − Δ_ij` and nothing runs per pair.
- `generic` (any other sequential block: norms on the sublayer outputs, a routed mixture of
  experts): the block's own modules after attention run on `[pairs, d]` (`BlockView.after_attention`),
  in chunks under the memory budget. A family is exact on it from its spec alone.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Literal

import torch

from vzcore.families import PARALLEL, POST_NORM, PRE_NORM, FamilySpec
from vzcore.ops.block import BlockView, UnsupportedBlockError, unsupported_shape
from vzcore.ops.pairs import gather_rows
from vzcore.ops.zeroing import BlockAlgebra, minus_mixed, pair_bytes, source_blocks, zeroed_block_outputs

__all__ = ["PATHS", "Path", "ZeroingPlan", "feed_forward_width", "zeroing_path"]

Path = Literal["factored", "parallel", "generic"]
PATHS: tuple[Path, ...] = ("factored", "parallel", "generic")


def zeroing_path(spec: FamilySpec) -> Path:
    """Return the exact path value zeroing takes for `spec`'s blocks (the fastest one that is exact)."""
    layout = spec.shape.layout
    if layout == PARALLEL:
        return "parallel"
    if layout in (POST_NORM, PRE_NORM) and spec.first_projs and spec.finish is not None:
        return "factored"
    return "generic"


@dataclass
class BlockRows:
    """The clean tensors the parallel and generic paths read (`b` texts, `n` positions, `H` heads)."""

    u: torch.Tensor  # projected values `[b, n, H, d]`: u_j^h = v_j^h W_O^h
    x: torch.Tensor  # block input `[b, n, d]`
    attn_out: torch.Tensor  # attention output after W_O `[b, n, d]`
    out: torch.Tensor  # block output `[b, n, d]`

    def texts(self, k: slice) -> BlockRows:
        return BlockRows(self.u[k], self.x[k], self.attn_out[k], self.out[k])

    def sources(self, j: slice) -> BlockRows:
        return BlockRows(self.u[:, j], self.x, self.attn_out, self.out)


def feed_forward_width(ffn: torch.nn.Module, d: int) -> int:
    """Return the floats a feed-forward holds per input row at once, bounded by its parameters per model dimension.

    A dense feed-forward's intermediates are its weights over `d` (gate, up and down: 3 × d_ff). A mixture
    of experts stacks its experts' weights `[E, out, in]` and runs each row through its `top_k` experts
    only (transformers' grouped and per-expert implementations both hold `top_k` rows per input row),
    so it costs `top_k` experts, their input and output copies and the routing, not every expert: counting
    every expert made chunks 2.8× too small on Mixtral 8×7B and 3.9× on Qwen1.5-MoE-A2.7B (by this count).
    """
    params = list(ffn.parameters())
    dense = sum(p.numel() for p in params if p.dim() != 3) // d
    stacked = [p for p in params if p.dim() == 3]
    if not stacked:
        return dense
    experts = stacked[0].shape[0]
    chosen = (getattr(m, "top_k", None) for m in ffn.modules())
    top_k = max((k for k in chosen if isinstance(k, int)), default=experts)
    per_expert = sum(p[0].numel() for p in stacked) // d
    # per chosen expert: its intermediates, the row's copy in, out and weighted; the routing's
    # logits, probabilities and one-hot masks; the summed output
    return dense + top_k * (per_expert + 4 * d) + 4 * experts + d


@dataclass
class ZeroingPlan:
    """One block's path and the per-layer quantities it shares across every chunk of pairs."""

    path: Path
    view: BlockView
    state: BlockAlgebra | BlockRows
    bytes_per_pair: int  # working memory of one (target, source) pair, for `pair_chunks`

    @classmethod
    def build(cls, view: BlockView) -> ZeroingPlan:
        """Build the plan of one block; raises `UnsupportedBlockError` for a shape no path is exact for."""
        if view.spec.shape.layout is None:  # an unknown shape: refused before any work
            raise UnsupportedBlockError(unsupported_shape(view.spec))
        path = zeroing_path(view.spec)
        cap = view.cap
        size, d = cap.x.element_size(), cap.x.shape[-1]
        if path == "factored":
            alg = BlockAlgebra.build(view)
            return cls(path, view, alg, pair_bytes(view, alg))
        rows = BlockRows(view.projected_values(), cap.x, cap.attn_out, cap.out)
        if path == "parallel":
            return cls(path, view, rows, size * 4 * d)
        ffn = feed_forward_width(view.block.get_submodule(view.spec.ffn or ""), d)
        return cls(path, view, rows, size * (ffn + 8 * d))

    def source_blocks(self, n: int, budget: int) -> list[slice]:
        """Cut `n` sources into blocks for the factored path's per-source projections (`source_blocks`)."""
        per_source = self.state.bytes_per_source() if isinstance(self.state, BlockAlgebra) else 0
        return source_blocks(n, per_source, budget)

    def projected(self) -> ZeroingPlan:
        """The same plan with its per-source projections made (for its sources: slice `sources` first)."""
        if isinstance(self.state, BlockAlgebra):
            return replace(self, state=self.state.projected())
        return self

    def texts(self, k: slice) -> ZeroingPlan:
        """The same plan for texts `k` of the batch."""
        return replace(self, state=self.state.texts(k))

    def sources(self, j: slice) -> ZeroingPlan:
        """The same plan for sources `j` (`outputs` then takes attention rows over those sources only)."""
        return replace(self, state=self.state.sources(j))

    def outputs(
        self,
        attn_rows: torch.Tensor,
        rows: torch.Tensor,
        valid: torch.Tensor | None,
        precision: Callable[[], AbstractContextManager] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return `(zeroed, clean)` block outputs, with the contract of `zeroed_block_outputs`."""
        if isinstance(self.state, BlockAlgebra):
            return zeroed_block_outputs(self.view, self.state, attn_rows, rows, valid, precision)
        st = self.state
        b, heads, t, n = attn_rows.shape
        a = attn_rows.permute(0, 3, 2, 1).reshape(b * n, t, heads)  # `[b·n, t, H]`
        every = valid is None

        def pick(x: torch.Tensor) -> torch.Tensor:
            return x.reshape(-1, x.shape[-1]) if every else x[valid]

        if self.path == "parallel":
            # y_i − Δ_ij: the feed-forward read the block input, which zeroing leaves alone
            clean = gather_rows(st.out, rows)[:, None]  # `[b, 1, t, d]`
            zeroed = minus_mixed(clean[:, 0], a, st.u)  # `[b, n, t, d]`
            if every:
                return zeroed, clean
            zeroed = zeroed[valid]
        else:
            x_rows, z_rows = gather_rows(st.x, rows), gather_rows(st.attn_out, rows)  # `[b, t, d]`
            z = minus_mixed(z_rows, a, st.u)  # attn_out_i − Δ_ij: `[b, n, t, d]`
            zeroed = self.view.after_attention(pick(x_rows[:, None].expand_as(z)), pick(z), precision)
            # The clean outputs go through the same modules, so zeroing nothing gives distance 0.
            clean = self.view.after_attention(x_rows.reshape(b * t, -1), z_rows.reshape(b * t, -1), precision)
            clean = clean.view(b, 1, t, -1)
            if every:
                return zeroed.view(b, n, t, -1), clean
        assert valid is not None
        text, _, target = valid.nonzero(as_tuple=True)
        return zeroed, clean[text, 0, target]
