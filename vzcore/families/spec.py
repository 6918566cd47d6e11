"""What differs between architecture families, as data: where each module of a block lives, and
where each of its norms sits and of what kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal, cast

import torch
from torch import nn

# finish(layer, first_projections, residual) -> block output `[pairs, d]`: everything after the
# feed-forward input projections, through the model's own modules (the activation, the down
# projection, the feed-forward output's norm, the residual add and the closing norm, as the block has them).
# (Blocks are typed `Any`: their submodules are reached by name, which nn.Module cannot type.)
FinishFn = Callable[[Any, list[torch.Tensor], torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SplitFinish:
    """A `finish` of a feed-forward `down(act(first[0]))` or, `gated`, `down(act(first[0]) * first[1])`, in
    two parts: `activation(layer)` returns the model's own activation (a module or function), and
    `rest(layer, hidden, residual)` runs everything after it through the model's modules. Called, it is
    the plain `FinishFn`; the fast path may instead run an activation it recognises exactly in place on
    the first projections (`vzcore.ops.activations`), which frees their `[pairs, F]` copies."""

    activation: Callable[[Any], Callable[[torch.Tensor], torch.Tensor]]
    rest: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]
    gated: bool = False

    def hidden(self, layer: Any, first: list[torch.Tensor]) -> torch.Tensor:
        """The feed-forward's hidden rows from its first projections, by the model's activation."""
        hidden = self.activation(layer)(first[0])
        return hidden * first[1] if self.gated else hidden

    def __call__(self, layer: Any, first: list[torch.Tensor], residual: torch.Tensor) -> torch.Tensor:
        return self.rest(layer, self.hidden(layer, first), residual)


# The block layouts the scoring algebra knows (`BlockShape.layout`).
Layout = Literal["post-norm", "pre-norm", "sandwich", "parallel"]
POST_NORM: Layout = "post-norm"  # `x + attention`, then a norm whose output the feed-forward adds to (BERT)
PRE_NORM: Layout = "pre-norm"  # norms before attention and before the feed-forward only (GPT-2, LLaMA)
SANDWICH: Layout = "sandwich"  # norms on the attention and/or feed-forward outputs before each add (Gemma 2/3, OLMo 2)
PARALLEL: Layout = "parallel"  # attention and feed-forward both read the block input (GPT-NeoX, GPT-J, Phi)
LAYOUTS: tuple[Layout, ...] = (POST_NORM, PRE_NORM, SANDWICH, PARALLEL)


class UnsupportedModelError(ValueError):
    """The model's architecture has no family spec."""


class NormKind(Enum):
    """How a norm scales: `Norm(s) = scale ⊙ C s / sqrt(mean((C s)²) + ε) + β`."""

    LAYER_NORM = "layernorm"  # centres (C), scales by γ, adds β where it has one
    RMS_NORM = "rmsnorm"  # no centring, scales by γ
    RMS_NORM_OFFSET = "rmsnorm_offset"  # no centring, scales by `1 + γ` (Gemma's RMSNorm)


@dataclass(frozen=True)
class Norm:
    """One norm of a block: its module path (relative to the block) and its kind."""

    path: str
    kind: NormKind


@dataclass(frozen=True)
class BlockShape:
    """Where a block's norms sit, each named by its position (TransformerLens's name in brackets).

    A sequential block computes, with every absent norm the identity:
    `s = x + on_attn_out(attention(before_attn(x)))`, `r = after_attn_sum(s)`,
    `o = r + on_ffn_out(ffn(before_ffn(r)))`, `out = after_ffn_sum(o)`.
    """

    before_attn: Norm | None = None  # on the block input, before attention [ln1]: GPT-2 ln_1, LLaMA input_layernorm
    on_attn_out: Norm | None = None  # on the attention output, before the residual add [ln1_post]: Gemma 2/3, OLMo 2
    after_attn_sum: Norm | None = (
        None  # on the attention residual sum `x + attention` (post-norm): BERT's first LayerNorm
    )
    # before the feed-forward [ln2]: GPT-2 ln_2, LLaMA post_attention_layernorm, Gemma 2 pre_feedforward_layernorm
    before_ffn: Norm | None = None
    on_ffn_out: Norm | None = None  # on the feed-forward output, before the residual add [ln2_post]: Gemma 2/3, OLMo 2
    after_ffn_sum: Norm | None = None  # closing the block, on the feed-forward residual sum: BERT's output.LayerNorm
    parallel: bool = False  # attention and feed-forward both read the block input (GPT-NeoX, GPT-J, Phi)

    @property
    def layout(self) -> Layout | None:
        """Return the known layout this shape has, or `None` (then `unsupported()` says why)."""
        if self.unsupported():
            return None
        if self.parallel:
            return PARALLEL
        if self.on_attn_out is not None or self.on_ffn_out is not None:
            return SANDWICH
        return POST_NORM if self.after_attn_sum is not None else PRE_NORM

    @property
    def mix_norm(self) -> Norm | None:
        """The norm that reads the state after attention: on the sum (post-norm) or before the feed-forward."""
        return self.after_attn_sum or self.before_ffn

    def unsupported(self) -> list[str]:
        """Return what this shape has that no known layout has (empty for a known layout)."""
        extra = (("attention output", self.on_attn_out), ("feed-forward output", self.on_ffn_out))
        outs = [f"a norm on the {what} ({norm.path})" for what, norm in extra if norm is not None]
        if self.parallel:
            closing = [f"a norm after the sum ({n.path})" for n in (self.after_attn_sum, self.after_ffn_sum) if n]
            why = outs + closing
            return ["attention and feed-forward running in parallel", *why] if why else []
        if outs:  # sandwich: norms on the sublayer outputs; none may close a sum
            sums = (("attention", self.after_attn_sum), ("feed-forward", self.after_ffn_sum))
            return [f"{outs[0]} and a norm on the {what} sum ({n.path})" for what, n in sums if n is not None]
        why = []
        if self.after_attn_sum is not None:  # nearest: post-norm
            before = (("attention", self.before_attn), ("the feed-forward", self.before_ffn))
            why += [f"a norm before {what} ({norm.path}) in a post-norm block" for what, norm in before if norm]
        elif self.before_ffn is None:
            why.append("no norm after attention")
        elif self.after_ffn_sum is not None:
            why.append(f"a closing norm ({self.after_ffn_sum.path}) in a pre-norm block")
        return why


@dataclass(frozen=True)
class FamilySpec:
    """One architecture family: module paths inside a block, its norms, and the few things data cannot say.

    Every path is relative to one block (layer) unless noted. `shape` places the norms; the
    feed-forward reads `first_projs` and `finish` does the rest of the block.
    """

    name: str
    model_types: tuple[str, ...]
    layers: str  # path of the block list, relative to the base model
    attention: str  # module whose output is `(attn_output, attn_weights)`
    value_proj: str  # module whose output holds the value vectors
    out_proj: str  # attention output projection (W_O)
    causal: bool
    shape: BlockShape  # where the block's norms sit, and of what kind
    # The feed-forward module (called on `[1, pairs, d]`): what the generic exact path runs per pair
    # (`None` where the feed-forward is no module of its own; the factored path reads `first_projs`).
    ffn: str | None = "mlp"
    # Feed-forward input projections (one, or gate and up) and the rest of the block after them, for
    # the factored fast path; none for a feed-forward with no cheaper algebra (a routed mixture of experts).
    first_projs: tuple[str, ...] = ()
    finish: FinishFn | None = None
    final_norm: str | None = None  # path relative to the base model, pre-norm models only
    fused_qkv: bool = False  # value projection output is `[q | k | v]` (GPT-2's c_attn, Phi-3's qkv_proj)
    qkv_per_head: bool = False  # value projection output is `[q_h | k_h | v_h]` per head (GPT-NeoX's query_key_value)
    ffn_size: str = "intermediate_size"  # config field of the feed-forward width (GPT-2: `n_inner`)
    # model types whose position ids start after the padding index (RoBERTa): two positions fewer
    padded_positions: tuple[str, ...] = ()
    # the spec for one Hugging Face config, where a config field changes the block's shape
    # (OPT's `do_layer_norm_before`, GPT-NeoX's `use_parallel_residual`); `None`: this spec for all
    variant: Callable[[Any], FamilySpec] | None = None
    # the attention module returns its weights only when the model is called with
    # `output_attentions=True` (DeBERTa-v2's disentangled attention), whatever its implementation
    weights_on_request: bool = False
    # the model reads audio samples (`input_values`) through a convolutional front end outside the
    # blocks (wav2vec2, HuBERT): its positions are encoder frames, and it has no tokens or token ids
    audio: bool = False

    # Code for a model whose layers are not one module each: the module every layer runs, in order
    # (ALBERT runs one shared layer for all of them); `None`: the module list at `layers`.
    layer_modules: Callable[[nn.Module], list[nn.Module]] | None = None

    def blocks(self, model: nn.Module) -> nn.ModuleList:
        """Return the block each layer runs, in order (one module appears once per layer it serves)."""
        if self.layer_modules is not None:
            return nn.ModuleList(self.layer_modules(model))
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
        """Return the value vectors `[..., kv_heads, head_dim]` inside the value projection's output (a view)."""
        if self.qkv_per_head:
            return proj_out.unflatten(-1, (geometry.kv_heads, 3, geometry.head_dim))[..., 2, :]
        values = proj_out[..., -geometry.kv_width :] if self.fused_qkv else proj_out
        return values.unflatten(-1, (geometry.kv_heads, geometry.head_dim))


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
