"""What differs between architecture families, as data: where each module of a block lives."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

# finish(layer, first_projections, residual) -> block output `[pairs, d]`:
# the activation, the down projection and the closing residual/norm of the feed-forward part.
# (Blocks are typed `Any`: their submodules are reached by name, which nn.Module cannot type.)
FinishFn = Callable[[Any, list[torch.Tensor], torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class FamilySpec:
    """One architecture family: module paths inside a block, and the few things data cannot say.

    Every path is relative to one block (layer) unless noted. A block computes
    `s = x + out_proj(attention(value_proj(...)))`, then either (post-norm)
    `y = mix_norm(s); out = finish(first_proj(y), residual=y)` or (pre-norm)
    `out = finish(first_proj(mix_norm(s)), residual=s)`.
    """

    name: str
    model_types: tuple[str, ...]
    layers: str  # path of the block list, relative to the base model
    attention: str  # module whose output is `(attn_output, attn_weights)`
    value_proj: str  # module whose output holds the value vectors
    out_proj: str  # attention output projection (W_O)
    mix_norm: str  # the norm applied to `x + attention output`
    first_projs: tuple[str, ...]  # feed-forward input projections (one, or gate and up)
    finish: FinishFn
    causal: bool
    post_norm: bool
    final_norm: str | None = None  # path relative to the base model, pre-norm models only
    fused_qkv: bool = False  # value projection output is `[q | k | v]` (GPT-2's c_attn)
    ffn_size: str = "intermediate_size"  # config field of the feed-forward width (GPT-2: `n_inner`)
    # model types whose position ids start after the padding index (RoBERTa): two positions fewer
    padded_positions: tuple[str, ...] = ()
    # The norm that closes a post-norm block, applied to `y + feed_forward(y)` (GlobEnc's second
    # norm); its input is captured. `None` for pre-norm blocks, whose output is the raw residual stream.
    out_norm: str | None = None

    def blocks(self, model: nn.Module) -> nn.ModuleList:
        """Return the base model's blocks, in order."""
        return cast(nn.ModuleList, model.get_submodule(self.layers))

    def geometry(self, config) -> Geometry:
        """Return the sizes of a model of this family from its Hugging Face `config`."""
        heads = int(config.num_attention_heads)  # GPT-2's `n_head` and friends map here (attribute_map)
        hidden = int(config.hidden_size)
        ffn = getattr(config, self.ffn_size, None)
        return Geometry(
            num_layers=int(config.num_hidden_layers),
            hidden=hidden,
            heads=heads,
            kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
            head_dim=int(getattr(config, "head_dim", None) or hidden // heads),
            ffn=int(ffn or 4 * hidden),  # GPT-2 leaves `n_inner` unset for 4 × hidden
        )

    def value_part(self, proj_out: torch.Tensor, geometry: Geometry) -> torch.Tensor:
        """Return the value vectors `[..., kv_heads · head_dim]` inside the value projection's output."""
        return proj_out[..., -geometry.kv_width :] if self.fused_qkv else proj_out


@dataclass(frozen=True)
class Geometry:
    """The sizes of one model: what scoring, estimates and the store need to know of its shape."""

    num_layers: int
    hidden: int
    heads: int  # query heads
    kv_heads: int  # key/value heads (fewer than `heads` with grouped-query attention)
    head_dim: int
    ffn: int  # feed-forward width (per input projection)

    @property
    def kv_width(self) -> int:
        return self.kv_heads * self.head_dim


def linear_params(module: nn.Module) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Return `(W, b)` with `W: [out, in]` for `nn.Linear` and GPT-2's transposed `Conv1D`."""
    if isinstance(module, nn.Linear):
        return module.weight, module.bias
    if type(module).__name__ == "Conv1D":
        conv: Any = module
        return conv.weight.t(), conv.bias
    raise TypeError(f"not a linear projection: {type(module).__name__}")
