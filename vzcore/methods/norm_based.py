"""Norm-based scores with the residual and the norms: Kobayashi et al. 2021's +RES and +RES+LN,
and GlobEnc (Modarressi et al. 2022) with its rollout.

Every block's attention sum splits into one vector per source (`vzcore.ops.norms`):
`y_ij = Σ_h a_ij^h u_j^h + δ_ij x_i`, with `u_j^h = (x'_j W_V^h + b_V^h) W_O^h` the projected
values (`x'_j` the value projection's input; a GQA head reads its key/value group's values) and
`x_i` the residual. Vectors are built in chunks of target rows under the batch's memory budget,
at `O(H · t · n · d)` per layer.

Family quirks: in post-norm encoders `x'_j = x_j` and the norms are LayerNorms (centring, then
`γ`, with the model's ε). In pre-norm decoders `x'_j` is the normed input (for LLaMA an RMSNorm,
which does not centre) while the residual is the raw stream; the norm after the attention sum
feeds only the feed-forward there, so the +LN and GlobEnc decompositions are refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vzcore.batch import Batch
from vzcore.methods.registry import register_method
from vzcore.ops.norms import inverse_scale, norm_linear, norm_params, residual_vectors
from vzcore.ops.rollout import normalize_rows, rollout
from vzcore.ops.zeroing import pair_chunks

__all__ = [
    "GlobEncConfig",
    "NormResConfig",
    "attention_norm_res",
    "attention_norm_res_ln",
    "first_norm_vectors",
    "globenc",
    "globenc_rollout",
    "layer_scores",
    "rows_of",
]

# score(y, layer, texts, rows) -> `[b', t', n]` raw scores of one chunk of residual vectors `y: [b', t', n, d]`
ChunkScore = Callable[[torch.Tensor, int, slice, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class NormResConfig:
    """+RES and +RES+LN take no options: the biases `b_O` and `β` belong to no source and are dropped."""


@dataclass(frozen=True)
class GlobEncConfig:
    """GlobEnc takes no options: the feed-forward is skipped, both norms use their clean statistics."""


def layer_scores(batch: Batch, layer: int, score: ChunkScore, bytes_per_pair: int) -> torch.Tensor:
    """Return one block's raw scores `[b, t, n]` (float64), 0 outside valid pairs, chunked by target rows."""
    cap = batch.captures[layer]
    u = batch.projected_values(layer)  # `[b, n, H, d]`
    valid = batch.valid_pairs(batch.rows, batch.row_mask)
    b, t, n = valid.shape
    out = torch.zeros((b, t, n), dtype=torch.float64, device=u.device)
    attn = batch.attention_rows(layer, batch.rows)  # `[b, H, t, n]`
    rows = batch.rows.to(u.device)
    for texts, chunk in pair_chunks(b, t, n, bytes_per_pair, batch.memory_budget):
        y = residual_vectors(attn[texts, :, chunk], u[texts], cap.x[texts], rows[texts, chunk])
        got = score(y, layer, texts, rows[texts, chunk])
        out[texts, chunk] = torch.where(valid[texts, chunk].to(out.device), got, 0.0)
    return out


def rows_of(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Return `x[k, rows[k]]` per text as `[b, t, 1, d]` (broadcast over sources) from `x: [b, n, d]`."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], rows][:, :, None]


def first_norm_vectors(batch: Batch, y: torch.Tensor, layer: int, texts: slice, rows: torch.Tensor) -> torch.Tensor:
    """Return `T_i(x_j) = γ₁ ⊙ (y_ij − mean(y_ij)) / σ_i`: `[b', t', n, d]` (float64), the part of the
    first norm's output due to source j, with `σ_i` the norm's clean statistics of `s_i = x_i + attn_out_i`."""
    spec = batch.handle.family
    cap = batch.captures[layer]
    norm = spec.blocks(batch.handle.model)[layer].get_submodule(spec.mix_norm)
    weight, centred, eps = norm_params(norm)
    s = rows_of(cap.x[texts] + cap.attn_out[texts], rows)
    return norm_linear(y, weight, inverse_scale(s, centred, eps), centred)


def _bytes(batch: Batch) -> int:
    # per pair: the float32 vector and about three float64 temporaries of it
    return 28 * batch.handle.config.hidden_size


def _normalised(batch: Batch, layers: list[int], score: ChunkScore) -> torch.Tensor:
    maps, _ = normalize_rows(torch.stack([layer_scores(batch, la, score, _bytes(batch)) for la in layers], 1))
    return batch.place_rows(maps)


@register_method("attention_norm_res", NormResConfig)
def attention_norm_res(batch: Batch, config: NormResConfig) -> torch.Tensor:
    """Attention-norm with the residual (Kobayashi et al. 2021, +RES): `‖Σ_h a_ij^h u_j^h + δ_ij x_i‖`.

    Kobayashi, Kuribayashi, Yokoi & Inui, "Incorporating Residual and Normalization Layers into
    Analysis of Masked Language Models", EMNLP 2021. Rows normalised. Defined for every family: in
    pre-norm decoders `u_j^h` is computed from the normed input (what the value projection sees)
    while `x_i` is the raw residual stream that the block adds back, so `Σ_j y_ij + b_O` is the
    state after attention in both cases.
    """
    return _normalised(batch, batch.layers, lambda y, *_: y.double().norm(dim=-1))


@register_method("attention_norm_res_ln", NormResConfig, post_norm_only=True)
def attention_norm_res_ln(batch: Batch, config: NormResConfig) -> torch.Tensor:
    """Attention-norm with residual and norm (Kobayashi et al. 2021, +RES+LN): `‖γ ⊙ (y_ij − mean(y_ij)) / σ_i‖`.

    `y_ij` is the +RES vector; `σ_i = sqrt(var(s_i) + ε)` is the first norm's clean statistic of
    `s_i = x_i + attn_out_i` (the model's own ε, inside the root), so the vectors plus the bias
    terms (`b_O`'s normed part and `β`, dropped) add up to the norm's output exactly. Rows
    normalised. Post-norm encoders only: in pre-norm decoders no norm sits between the attention
    sum and the residual stream (the norm after it feeds only the feed-forward), so the method is
    refused there; use `attention_norm_res` or `alti`.
    """

    def score(y: torch.Tensor, layer: int, texts: slice, rows: torch.Tensor) -> torch.Tensor:
        return first_norm_vectors(batch, y, layer, texts, rows).norm(dim=-1)

    return _normalised(batch, batch.layers, score)


def _globenc_score(batch: Batch) -> ChunkScore:
    spec = batch.handle.family
    blocks = spec.blocks(batch.handle.model)

    def score(y: torch.Tensor, layer: int, texts: slice, rows: torch.Tensor) -> torch.Tensor:
        t_vec = first_norm_vectors(batch, y, layer, texts, rows)
        out_norm_in = batch.captures[layer].out_norm_in
        assert spec.out_norm is not None and out_norm_in is not None  # post-norm only: checked before
        weight, centred, eps = norm_params(blocks[layer].get_submodule(spec.out_norm))
        inv = inverse_scale(rows_of(out_norm_in[texts], rows), centred, eps)
        return norm_linear(t_vec, weight, inv, centred).norm(dim=-1)

    return score


def _globenc_maps(batch: Batch, layers: list[int]) -> torch.Tensor:
    key = ("globenc", tuple(layers), batch.rows.numpy().tobytes(), batch.row_mask.numpy().tobytes())
    if key not in batch.memo:
        batch.memo[key] = _normalised(batch, layers, _globenc_score(batch))
    return batch.memo[key]


@register_method("globenc", GlobEncConfig, post_norm_only=True)
def globenc(batch: Batch, config: GlobEncConfig) -> torch.Tensor:
    """GlobEnc layer-wise (Modarressi et al. 2022, "GlobEnc¬"): the +RES+LN vectors through the second norm, `‖·‖`.

    Modarressi, Fayyaz, Yaghoobzadeh & Pilehvar, "GlobEnc: Quantifying Global Token Attribution
    by Incorporating the Whole Encoder Layer in Transformers", NAACL 2022. Each `T_i(x_j)` is
    carried through the block's closing norm's linear part, `γ₂ ⊙ (T − mean(T)) / σ₂_i`, with
    `σ₂_i` the clean statistic of that norm's real input `y_i + FFN(y_i)` (captured); the
    feed-forward itself is skipped, as in the paper. Rows normalised. Post-norm encoders only.
    """
    return _globenc_maps(batch, batch.layers)


@register_method("globenc_rollout", GlobEncConfig, needs_all_rows=True, post_norm_only=True)
def globenc_rollout(batch: Batch, config: GlobEncConfig) -> torch.Tensor:
    """GlobEnc rolled out across layers without identity: `R^l = G^l @ R^{l−1}` (the residual is already in `G`)."""
    full = batch.all_rows()
    maps = _globenc_maps(full, list(range(max(batch.layers) + 1)))
    return batch.select_rolled(torch.stack([rollout(m.nan_to_num(0.0)) for m in maps]))
