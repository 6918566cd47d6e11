"""ALTI (Ferrando, Gállego & Costa-jussà, "Measuring the Mixing of Contextual Information in the
Transformer", EMNLP 2022) and its rollout; decoders use the residual-stream form of Ferrando &
Voita, "Information Flow Routes: Automatically Interpreting Language Models at Scale", 2024."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vzcore.batch import Batch
from vzcore.families import POST_NORM, PRE_NORM
from vzcore.methods.norm_based import ChunkScore, layer_scores, rows_of
from vzcore.methods.registry import register_method, register_rollout
from vzcore.ops.block import BlockView
from vzcore.ops.norms import l1_proportions
from vzcore.ops.pairs import pair_chunks
from vzcore.ops.rollout import normalize_rows

__all__ = ["AltiConfig", "alti"]


@dataclass(frozen=True)
class AltiConfig:
    """ALTI takes no options: L1 distances, contributions clipped at 0 and normalised to sum to 1."""


def _post_norm_scorer(view: BlockView) -> ChunkScore:
    """ALTI of a post-norm block: `max(0, ‖ỹ_i‖₁ − ‖ỹ_i − T_i(x_j)‖₁)` per chunk (float64)."""
    first = view.mix_linear()  # `T_i(x_j)`: the first norm's linear part, at the clean `σ_i`
    # ỹ_i: the first norm's real output (β and b_O's part included, as the authors' resultant)
    out = view.mix_output(view.state_after_attention)
    return lambda y, texts, rows: l1_proportions(first(y, texts, rows), rows_of(out[texts], rows))


def _post_norm_layer(batch: Batch, layer: int) -> torch.Tensor:
    """ALTI of a post-norm block, `[b, t, n]` (float64)."""
    return layer_scores(batch, layer, _post_norm_scorer, 28 * batch.handle.config.hidden_size)


def _pre_norm_layer(batch: Batch, layer: int) -> torch.Tensor:
    """Residual-stream ALTI of a pre-norm block: per-head parts and the residual against `s_i`, `[b, t, n]`.

    The state after attention `s_i = x_i + Σ_h Σ_j a_ij^h u_j^h + b_O` has the parts
    `z_ij^h = a_ij^h u_j^h` (one per head and source) and the residual `x_i`; each part scores
    `max(0, ‖s_i‖₁ − ‖s_i − z‖₁)`. A source's score is the sum over its heads (plus the residual's
    on the diagonal), so normalising over sources normalises over all parts, as Ferrando & Voita do.
    """
    view = batch.block(layer)
    x = view.cap.x  # the residual: the block input
    u = view.projected_values()  # `[b, n, H, d]`
    valid = batch.valid_pairs(batch.rows, batch.row_mask)
    b, t, n = valid.shape
    heads, d = u.shape[2], u.shape[3]
    out = torch.zeros((b, t, n), dtype=torch.float64, device=u.device)
    attn = batch.attention_rows(layer, batch.rows)  # `[b, H, t, n]`
    rows = batch.rows.to(u.device)
    s = view.state_after_attention  # `[b, n, d]`
    for texts, chunk in pair_chunks(b, t, n, 20 * heads * d, batch.memory_budget):
        r = rows[texts, chunk]
        s_rows = rows_of(s[texts], r)  # `[b', t', 1, d]`
        parts = torch.einsum("bhtj,bjhd->btjhd", attn[texts, :, chunk], u[texts])  # `[b', t', n, H, d]`
        got = l1_proportions(parts, s_rows[:, :, :, None]).sum(-1)  # `[b', t', n]`
        residual = l1_proportions(rows_of(x[texts], r), s_rows)[..., 0]  # `[b', t']`
        got.scatter_add_(2, r[..., None], residual[..., None])
        out[texts, chunk] = torch.where(valid[texts, chunk].to(out.device), got, 0.0)
    return out


def _layer(batch: Batch, layer: int) -> torch.Tensor:
    post_norm = batch.block(layer).layout == POST_NORM
    return _post_norm_layer(batch, layer) if post_norm else _pre_norm_layer(batch, layer)


def _maps(batch: Batch, layers: list[int]) -> torch.Tensor:
    key = ("alti", tuple(layers), batch.rows.numpy().tobytes(), batch.row_mask.numpy().tobytes())
    if key not in batch.memo:
        maps, _ = normalize_rows(torch.stack([_layer(batch, layer) for layer in layers], 1))
        batch.memo[key] = batch.place_rows(maps)
    return batch.memo[key]


@register_method("alti", AltiConfig, layouts=(POST_NORM, PRE_NORM))
def alti(batch: Batch, config: AltiConfig) -> torch.Tensor:
    """ALTI layer-wise ("ALTI¬"): `max(0, ‖y_i‖₁ − ‖y_i − T_i(x_j)‖₁)`, rows normalised.

    `y_i` is the first norm's output and `T_i(x_j)` the part of it due to source j.

    Post-norm encoders: `T_i(x_j)` is the +RES+LN vector (the part of the first norm's output
    due to source j, with the norm's clean statistics) and `y_i` the norm's real output.
    Pre-norm decoders, where no norm closes the attention sum: the residual-stream form of
    Ferrando & Voita 2024, with one part per (head, source) plus the residual, against the
    state after attention (see `_pre_norm_layer`). Contributions are normalised by their sum
    (the authors' "min_sum" with the resultant's norm).
    """
    return _maps(batch, batch.layers)


register_rollout(
    "alti_rollout",
    "alti",
    "ALTI rolled out across layers without identity (the residual is already a part): `R^l = A^l @ R^{l−1}`.",
    layouts=(POST_NORM, PRE_NORM),
)
