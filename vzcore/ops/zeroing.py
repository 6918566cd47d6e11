"""Exact value zeroing of one block for many (target i, source j) pairs at once.

Zeroing token j's value vectors leaves the attention weights unchanged, so the zeroed attention
output is the clean one minus a correction of rank at most `H` per source:

    attn_out_i^{¬j} = attn_out_i − Δ_ij,   Δ_ij = Σ_h a_ij^h u_j^h,   u_j^h = v_j^h W_O^h

The feed-forward input projection of the norm that follows is factored the same way
(`W·Norm(s_i − Δ_ij)` from `W(γ⊙s_i)`, `W(γ⊙u_j^h)` and the pair's own norm statistics), so per
pair only `O(H·d_ff)` work precedes the activation and the down projection, which run on
`[pairs, d_ff]` through the model's own modules.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from vzcore.capture import LayerCapture
from vzcore.families import FamilySpec, linear_params

__all__ = ["BlockAlgebra", "attention_deltas", "pair_chunks", "zeroed_block_outputs"]


@dataclass
class BlockAlgebra:
    """Per-layer quantities shared by every pair (`b` texts, `n` positions, `H` heads)."""

    u: torch.Tensor  # projected values `[b, n, H, d]`: u_j^h = v_j^h W_O^h
    s: torch.Tensor  # clean pre-norm sum `x + attn_out`: `[b, n, d]`
    proj_s: list[torch.Tensor]  # W(γ⊙s'): `[b, n, F]` per input projection (s' centred for LayerNorm)
    proj_u: list[torch.Tensor]  # W(γ⊙u'): `[b, n, H, F]` per input projection
    proj_bias: list[torch.Tensor]  # W β + b: `[F]` per input projection
    layer_norm: bool  # LayerNorm (centred) rather than RMSNorm
    eps: float

    @staticmethod
    def projected_values(block: nn.Module, spec: FamilySpec, cap: LayerCapture) -> torch.Tensor:
        """Return `u_j^h = v_j^h W_O^h`: `[b, n, H, d]` (a key/value head serves all its query heads)."""
        heads = cap.attn.shape[1]
        values = cap.values.repeat_interleave(heads // cap.values.shape[2], dim=2)  # `[b, n, H, d_h]`
        w_o, _ = linear_params(block.get_submodule(spec.out_proj))  # `[d, H·d_h]`
        return torch.einsum("bjhk,dhk->bjhd", values, w_o.unflatten(1, (heads, -1)))

    @classmethod
    def build(cls, block: nn.Module, spec: FamilySpec, cap: LayerCapture) -> BlockAlgebra:
        u = cls.projected_values(block, spec, cap)
        s = cap.x + cap.attn_out
        norm = block.get_submodule(spec.mix_norm)
        layer_norm = isinstance(norm, nn.LayerNorm)
        gamma = norm.weight
        beta = norm.bias if layer_norm else None
        eps = norm.eps if layer_norm else getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6))
        s_c, u_c = (s - s.mean(-1, keepdim=True), u - u.mean(-1, keepdim=True)) if layer_norm else (s, u)
        proj_s, proj_u, proj_bias = [], [], []
        for path in spec.first_projs:
            w, b = linear_params(block.get_submodule(path))
            wg = w * gamma  # `[F, d]`
            proj_s.append(s_c @ wg.t())
            proj_u.append(u_c @ wg.t())
            bias = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
            if beta is not None:
                bias = bias + w @ beta
            if b is not None:
                bias = bias + b
            proj_bias.append(bias)
        return cls(u, s, proj_s, proj_u, proj_bias, layer_norm, float(eps))


def attention_deltas(attn_rows: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Return `Δ[b, t, j] = Σ_h a[b, h, t, j] u[b, j, h]` for `attn_rows: [b, H, t, n]`, `u: [b, n, H, d]`."""
    return torch.einsum("bhtj,bjhd->btjd", attn_rows, u)


def pair_chunks(b: int, t: int, n: int, bytes_per_pair: int, budget: int) -> list[tuple[slice, slice]]:
    """Cut a `[b, t, n]` pair grid into `(text slice, row slice)` chunks of at most `budget` bytes."""
    rows = max(1, min(t, budget // max(1, n * bytes_per_pair)))
    texts = max(1, min(b, budget // max(1, t * n * bytes_per_pair))) if rows == t else 1
    return [(slice(i, i + texts), slice(r, r + rows)) for i in range(0, b, texts) for r in range(0, t, rows)]


def _block_outputs(
    block: nn.Module,
    spec: FamilySpec,
    alg: BlockAlgebra,
    s: torch.Tensor,
    proj: list[torch.Tensor],
) -> torch.Tensor:
    """Finish the block for pre-norm sums `s: [p, d]` whose factored projections `proj: [p, F]` lack the norm scale."""
    if alg.layer_norm:
        s_c = s - s.mean(-1, keepdim=True)
        inv = torch.rsqrt(s_c.pow(2).mean(-1, keepdim=True) + alg.eps)
    else:
        inv = torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + alg.eps)
    first = [p.mul_(inv).add_(bias) for p, bias in zip(proj, alg.proj_bias, strict=True)]
    residual = block.get_submodule(spec.mix_norm)(s) if spec.post_norm else s
    return spec.finish(block, first, residual)


def zeroed_block_outputs(
    block: nn.Module,
    spec: FamilySpec,
    alg: BlockAlgebra,
    attn_rows: torch.Tensor,
    rows: torch.Tensor,
    valid: torch.Tensor,
    autocast: object | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return `(zeroed, clean)` block outputs `[p, d]` for the `valid` pairs of a chunk.

    `attn_rows: [b, H, t, n]` are the attention rows of targets `rows: [b, t]`; `valid: [b, t, n]`
    selects the (target, source) pairs; `alg` must be sliced to the same `b` texts.
    """
    with autocast or nullcontext():
        delta = attention_deltas(attn_rows, alg.u)  # `[b, t, n, d]`
        s_rows = torch.gather(alg.s, 1, rows[..., None].expand(-1, -1, alg.s.shape[-1]))  # `[b, t, d]`
        s = (s_rows[:, :, None, :] - delta)[valid]  # `[p, d]`
        proj = []
        for ps, pu in zip(alg.proj_s, alg.proj_u, strict=True):
            ps_rows = torch.gather(ps, 1, rows[..., None].expand(-1, -1, ps.shape[-1]))  # `[b, t, F]`
            mixed = torch.einsum("bhtj,bjhf->btjf", attn_rows, pu)  # `[b, t, n, F]`
            proj.append(torch.sub(ps_rows[:, :, None, :], mixed, out=mixed)[valid])
        zeroed = _block_outputs(block, spec, alg, s, proj)
        # The clean outputs go through the same arithmetic, so zeroing nothing gives distance 0.
        target_of_pair = valid.nonzero()[:, :2]
        clean_s = s_rows[valid.any(-1)]
        clean_proj = [
            torch.gather(ps, 1, rows[..., None].expand(-1, -1, ps.shape[-1]))[valid.any(-1)] for ps in alg.proj_s
        ]
        clean = _block_outputs(block, spec, alg, clean_s, clean_proj)
    # Map each pair to its target's clean output.
    target_index = torch.cumsum(valid.any(-1).flatten(), 0) - 1
    flat_target = target_of_pair[:, 0] * valid.shape[1] + target_of_pair[:, 1]
    return zeroed, clean[target_index[flat_target]]
