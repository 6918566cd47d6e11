"""Exact value zeroing of spans (sets of positions zeroed at once) in one single-stack block.

Zeroing every source of a span S leaves the attention weights unchanged, so the attention output of
target i is the clean one minus the sum of its members' terms (docs/value-zeroing.md §3):

    z_i^{¬S} = z_i − Σ_{j∈S} Σ_h a_ij^h u_j^h,    u_j^h = v_j^h W_O^h.

The rest of the block (residual add, norms, feed-forward) runs through the model's own modules on
`[spans · targets, d]` (`rest_of_block`), in chunks of target rows under a memory budget.
Encoder–decoder sites zero spans the same way (`vzcore.ops.sites`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from vzcore.families import POST_NORM, PRE_NORM, FamilySpec
from vzcore.ops.block import BlockView

__all__ = ["rest_of_block", "span_distances", "spans_unsupported"]


def _factored(spec: FamilySpec) -> bool:
    """Whether the rest of the block runs through its feed-forward's input projections and `finish`."""
    return spec.shape.layout in (POST_NORM, PRE_NORM) and bool(spec.first_projs) and spec.finish is not None


def spans_unsupported(spec: FamilySpec) -> str | None:
    """Return why spans of `spec`'s blocks cannot be zeroed exactly here (None where they can): the
    rest of the block must run after attention, through the feed-forward's input projections and the
    rest of the block (`finish`) or through a feed-forward module of its own."""
    if spec.shape.layout is None or spec.shape.parallel:
        return f"{spec.name} blocks are not sequential (attention, then the feed-forward)"
    if not _factored(spec) and spec.ffn is None:
        return f"{spec.name} blocks have no feed-forward module to run after attention"
    return None


def rest_of_block(view: BlockView, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Return block outputs `[p, d]` from inputs `x: [p, d]` and attention outputs `z: [p, d]` (after `W_O`),
    through the block's own modules: the norm after attention, the feed-forward's input projections and
    `finish` (post-norm and pre-norm blocks that name them), else the feed-forward module."""
    spec = view.spec
    if not _factored(spec):
        return view.after_attention(x, z)
    s = x + z
    normed = view.mix_output(s)  # what the feed-forward reads
    assert spec.finish is not None
    first = [view.block.get_submodule(p)(normed) for p in spec.first_projs]
    return spec.finish(view.block, first, view.ffn_residual(s))


@torch.no_grad()
def span_distances(
    view: BlockView,
    spans: Sequence[torch.Tensor],
    distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    memory_budget: int,
    final: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Return the raw distances `C[i, c]` (float64) of one block's single input (a batch of one): target `i`,
    column `c` the span `spans[c]` (an index tensor of positions) zeroed at once. `final`: a norm applied to
    the zeroed and clean outputs alike before the distance (the model's final norm on its last block)."""
    cap = view.cap
    a = cap.attn[0]  # `[H, n, n]`
    n = a.shape[1]
    u = view.projected_values()[0]  # `[n, H, d]`
    x, z = cap.x[0], cap.attn_out[0]  # `[n, d]`
    clean = rest_of_block(view, x, z)  # through the same modules: zeroing nothing gives 0
    if final is not None:
        clean = final(clean)
    d = x.shape[-1]
    ffn = sum(p.numel() for p in view.block.parameters()) // d  # the block's widest intermediates, bounded
    per_pair = x.element_size() * (ffn + 8 * d)
    rows_per_chunk = max(1, min(n, memory_budget // max(1, len(spans) * per_pair)))
    dist = torch.zeros((n, len(spans)), dtype=torch.float64, device=x.device)
    for r0 in range(0, n, rows_per_chunk):
        rows = slice(r0, min(n, r0 + rows_per_chunk))
        t = rows.stop - rows.start
        # a span's correction: its members' terms summed, `[t, |S|·H] @ [|S|·H, d]`
        delta = torch.stack([a[:, rows][:, :, s].permute(1, 2, 0).reshape(t, -1) @ u[s].reshape(-1, d) for s in spans])
        zeroed = z[rows][None] - delta  # `[S, t, d]`
        xs = x[rows][None].expand_as(zeroed)
        out = rest_of_block(view, xs.reshape(-1, d), zeroed.reshape(-1, d)).view(len(spans), t, -1)
        if final is not None:
            out = final(out)
        dist[rows] = distance(out, clean[rows][None]).T
    return dist
