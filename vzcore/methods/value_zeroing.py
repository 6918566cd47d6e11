"""Value zeroing (Mohebbi, Zuidema, Chrupała & Alishahi, "Quantifying Context Mixing in
Transformers", EACL 2023) and its rollout."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vzcore.batch import Batch
from vzcore.families import LAYOUTS
from vzcore.methods.registry import register_method, register_rollout
from vzcore.ops.distances import DISTANCES
from vzcore.ops.pairs import visible_pair_chunks
from vzcore.ops.paths import ZeroingPlan
from vzcore.ops.rollout import normalize_rows
from vzcore.precision import keep_casts

__all__ = ["ValueZeroingConfig", "value_zeroing"]


@dataclass(frozen=True)
class ValueZeroingConfig:
    distance: str = "cosine"  # "cosine" (the paper's) or "euclidean"
    # Pre-norm decoders: compare the last block's outputs after the model's final norm
    # (as inseq does) instead of the raw residual stream (the default, like every other layer).
    final_norm: bool = False

    def __post_init__(self):
        if self.distance not in DISTANCES:
            raise ValueError(f"unknown distance {self.distance!r}; choose from: {', '.join(DISTANCES)}")


def layer_distances(batch: Batch, layer: int, config: ValueZeroingConfig, rows, row_mask) -> torch.Tensor:
    """Return the raw distances `C[b, t, j]` (float64) of one block; 0 outside valid pairs."""
    handle, spec = batch.handle, batch.handle.family
    view = batch.block(layer)
    cap = view.cap
    final = None
    if config.final_norm and spec.final_norm and layer == handle.num_layers - 1:
        final = handle.model.get_submodule(spec.final_norm)
    distance = DISTANCES[config.distance]
    valid = batch.valid_pairs(rows, row_mask)
    b, t, n = valid.shape
    dist = torch.zeros((b, t, n), dtype=torch.float64, device=cap.x.device)
    plan = ZeroingPlan.build(view)
    attn = batch.attention_rows(layer, rows)  # `[b, H, t, n]`
    rows_dev = rows.to(dist.device)
    # Each chunk computes only the sources its rows see (causal rows: up to themselves; a padded
    # batch's short texts: up to their length), not all `n`.
    reach = (valid * torch.arange(1, n + 1)).amax(-1)  # `[b, t]`: sources `0 .. reach − 1` are visible
    with keep_casts(batch.precision):  # the layer's weights are cast to lower precision once, not per chunk
        # Sources in blocks whose per-source projections fit the budget (one block unless the text is long)
        for block in plan.source_blocks(n, batch.memory_budget):
            seen = (reach - block.start).clamp(0, block.stop - block.start)  # visible sources within the block
            if not seen.any():
                continue
            sources = plan.sources(block).projected()
            for texts, chunk, local in visible_pair_chunks(seen, plan.bytes_per_pair, batch.memory_budget):
                src = slice(block.start + local.start, block.start + local.stop)
                v = valid[texts, chunk, src].transpose(1, 2)  # source major: `[b, s, t]`, on the CPU
                if not v.any():
                    continue
                every = bool(v.all())
                v_dev = None if every else v.to(dist.device)
                part = sources.texts(texts).sources(local)
                zeroed, clean = part.outputs(attn[texts, :, chunk, src], rows_dev[texts, chunk], v_dev, batch.precision)
                if final is not None:
                    zeroed, clean = final(zeroed), final(clean)
                if every:
                    dist[texts, chunk, src] = distance(zeroed, clean).transpose(1, 2)  # `[b, s, t]` -> `[b, t, s]`
                else:
                    dist[texts, chunk, src].transpose(1, 2)[v_dev] = distance(zeroed, clean)
    return dist


def _maps(batch: Batch, config: ValueZeroingConfig, layers: list[int]) -> torch.Tensor:
    key = (
        "value_zeroing",
        config,
        tuple(layers),
        batch.rows.numpy().tobytes(),
        batch.row_mask.numpy().tobytes(),
    )
    if key not in batch.memo:
        per_layer = [layer_distances(batch, layer, config, batch.rows, batch.row_mask) for layer in layers]
        maps, _ = normalize_rows(torch.stack(per_layer, 1))  # `[b, L, t, n]`
        batch.memo[key] = batch.place_rows(maps)
    return batch.memo[key]


@register_method("value_zeroing", ValueZeroingConfig, layouts=LAYOUTS)
def value_zeroing(batch: Batch, config: ValueZeroingConfig) -> torch.Tensor:
    """Layer-wise value zeroing: cosine distance of each output when one token's values are zeroed."""
    return _maps(batch, config, batch.layers)


register_rollout(
    "value_zeroing_rollout",
    "value_zeroing",
    "Value zeroing rolled out across layers without identity: `R^l = VZ^l @ R^{l-1}`.",
    layouts=LAYOUTS,
)
