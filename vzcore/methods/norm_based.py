"""Norm-based scores with the residual and the norms: Kobayashi et al. 2021's +RES and +RES+LN,
and GlobEnc (Modarressi et al. 2022) with its rollout.

Every block's attention sum splits into one vector per source (`vzcore.ops.norms`):
`y_ij = Σ_h a_ij^h u_j^h + δ_ij x_i`, with `u_j^h = (x'_j W_V^h + b_V^h) W_O^h` the projected
values (`x'_j` the value projection's input; a GQA head reads its key/value group's values) and
`x_i` the residual. Vectors are built in chunks of target rows under the batch's memory budget,
at `O(H · t · n · d)` per layer.

Block layouts (`vzcore.ops.block.BlockView` answers for them): in post-norm encoders `x'_j = x_j`
and a norm closes the attention sum (its kind, ε and clean statistics from the view). In pre-norm
decoders `x'_j` is the normed input while the residual is the raw stream; the norm after the
attention sum feeds only the feed-forward there, so the +LN and GlobEnc decompositions are refused.
Other block shapes (a norm on the attention output, parallel blocks) are refused by every method here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from vzcore.batch import Batch
from vzcore.families import POST_NORM, PRE_NORM
from vzcore.methods.registry import register_method, register_rollout
from vzcore.ops.block import BlockView
from vzcore.ops.norms import residual_vectors
from vzcore.ops.pairs import gather_rows, pair_chunks
from vzcore.ops.rollout import normalize_rows

__all__ = [
    "GlobEncConfig",
    "NormResConfig",
    "attention_norm_res",
    "attention_norm_res_ln",
    "globenc",
    "layer_scores",
    "rows_of",
]

# score(y, texts, rows) -> `[b', t', n]` raw scores of one chunk of residual vectors `y: [b', t', n, d]`
# of target `rows: [b', t']` of `texts`; a Scorer makes one per block, from its view.
ChunkScore = Callable[[torch.Tensor, slice, torch.Tensor], torch.Tensor]
Scorer = Callable[[BlockView], ChunkScore]


@dataclass(frozen=True)
class NormResConfig:
    """+RES and +RES+LN take no options: the biases `b_O` and `β` belong to no source and are dropped."""


@dataclass(frozen=True)
class GlobEncConfig:
    """GlobEnc takes no options: the feed-forward is skipped, both norms use their clean statistics."""


def layer_scores(batch: Batch, layer: int, scorer: Scorer, bytes_per_pair: int) -> torch.Tensor:
    """Return one block's raw scores `[b, t, n]` (float64), 0 outside valid pairs, chunked by target rows."""
    view = batch.block(layer)
    score = scorer(view)
    u = view.projected_values()  # `[b, n, H, d]`
    x = view.cap.x  # the residual: the block input
    valid = batch.valid_pairs(batch.rows, batch.row_mask)
    b, t, n = valid.shape
    out = torch.zeros((b, t, n), dtype=torch.float64, device=u.device)
    attn = batch.attention_rows(layer, batch.rows)  # `[b, H, t, n]`
    rows = batch.rows.to(u.device)
    for texts, chunk in pair_chunks(b, t, n, bytes_per_pair, batch.memory_budget):
        y = residual_vectors(attn[texts, :, chunk], u[texts], x[texts], rows[texts, chunk])
        got = score(y, texts, rows[texts, chunk])
        out[texts, chunk] = torch.where(valid[texts, chunk].to(out.device), got, 0.0)
    return out


def rows_of(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Return `x[k, rows[k]]` per text as `[b, t, 1, d]` (broadcast over sources) from `x: [b, n, d]`."""
    return gather_rows(x, rows)[:, :, None]


def _bytes(batch: Batch) -> int:
    # per pair: the float32 vector and about three float64 temporaries of it
    return 28 * batch.handle.config.hidden_size


def _normalised(batch: Batch, layers: list[int], scorer: Scorer) -> torch.Tensor:
    maps, _ = normalize_rows(torch.stack([layer_scores(batch, la, scorer, _bytes(batch)) for la in layers], 1))
    return batch.place_rows(maps)


@register_method("attention_norm_res", NormResConfig, layouts=(POST_NORM, PRE_NORM))
def attention_norm_res(batch: Batch, config: NormResConfig) -> torch.Tensor:
    """Attention-norm with the residual (Kobayashi et al. 2021, +RES): `‖Σ_h a_ij^h u_j^h + δ_ij x_i‖`.

    Kobayashi, Kuribayashi, Yokoi & Inui, "Incorporating Residual and Normalization Layers into
    Analysis of Masked Language Models", EMNLP 2021. Rows normalised. Defined for post-norm and
    pre-norm blocks, whose state after attention is `x_i + attn_out_i`: in pre-norm decoders `u_j^h`
    is computed from the normed input (what the value projection sees) while `x_i` is the raw
    residual stream that the block adds back, so `Σ_j y_ij + b_O` is that state in both cases.
    """
    return _normalised(batch, batch.layers, lambda view: lambda y, *_: y.double().norm(dim=-1))


@register_method("attention_norm_res_ln", NormResConfig, layouts=(POST_NORM,))
def attention_norm_res_ln(batch: Batch, config: NormResConfig) -> torch.Tensor:
    """Attention-norm with residual and norm (Kobayashi et al. 2021, +RES+LN): `‖γ ⊙ (y_ij − mean(y_ij)) / σ_i‖`.

    `y_ij` is the +RES vector; `σ_i = sqrt(var(s_i) + ε)` is the first norm's clean statistic of
    `s_i = x_i + attn_out_i` (the model's own ε, inside the root), so the vectors plus the bias
    terms (`b_O`'s normed part and `β`, dropped) add up to the norm's output exactly. Rows
    normalised. Post-norm encoders only: in pre-norm decoders no norm sits between the attention
    sum and the residual stream (the norm after it feeds only the feed-forward), so the method is
    refused there; use `attention_norm_res` or `alti`.
    """

    def scorer(view: BlockView) -> ChunkScore:
        first = view.mix_linear()  # `T_i(x_j)`: the first norm's linear part, at the clean `σ_i`
        return lambda y, texts, rows: first(y, texts, rows).norm(dim=-1)

    return _normalised(batch, batch.layers, scorer)


def _globenc_scorer(view: BlockView) -> ChunkScore:
    first, closing = view.mix_linear(), view.closing_linear()
    return lambda y, texts, rows: closing(first(y, texts, rows), texts, rows).norm(dim=-1)


def _globenc_maps(batch: Batch, layers: list[int]) -> torch.Tensor:
    key = ("globenc", tuple(layers), batch.rows.numpy().tobytes(), batch.row_mask.numpy().tobytes())
    if key not in batch.memo:
        batch.memo[key] = _normalised(batch, layers, _globenc_scorer)
    return batch.memo[key]


@register_method("globenc", GlobEncConfig, layouts=(POST_NORM,))
def globenc(batch: Batch, config: GlobEncConfig) -> torch.Tensor:
    """GlobEnc layer-wise (Modarressi et al. 2022, "GlobEnc¬"): the +RES+LN vectors through the second norm, `‖·‖`.

    Modarressi, Fayyaz, Yaghoobzadeh & Pilehvar, "GlobEnc: Quantifying Global Token Attribution
    by Incorporating the Whole Encoder Layer in Transformers", NAACL 2022. Each `T_i(x_j)` is
    carried through the block's closing norm's linear part, `γ₂ ⊙ (T − mean(T)) / σ₂_i`, with
    `σ₂_i` the clean statistic of that norm's real input `y_i + FFN(y_i)` (captured); the
    feed-forward itself is skipped, as in the paper. Rows normalised. Post-norm encoders only.
    """
    return _globenc_maps(batch, batch.layers)


register_rollout(
    "globenc_rollout",
    "globenc",
    "GlobEnc rolled out across layers without identity: `R^l = G^l @ R^{l−1}` (the residual is already in `G`).",
    layouts=(POST_NORM,),
)
