"""Gradient baselines, layer-wise: gradient × input (Shrikumar et al. 2017; Kindermans et al. 2016)
and integrated gradients (Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks",
ICML 2017), attributed to each block's input tokens as in Mohebbi et al. 2023.

The explained scalar `f_i` of target row `i` is the model's prediction there: the masked-LM
logit of a word (default: the model's own top prediction at that row), or for causal models the
log-probability of the next token (default: the text's next token; at the last row, the top
prediction). A model loaded without an LM head (MiniLM) explains the L2 norm of the target's
final representation (`last_hidden_state`, after the final norm in decoders) instead. Then

    C^l[i, j] = |Σ_d A^l_i(x_j)_d|,   rows normalised,

where `A` is `∂f_i/∂x_j^l ⊙ x_j^l` (gradient × input) or `x_j^l ⊙ (1/m) Σ_{k=1..m} ∂f_i/∂x_j^l
at (k/m) X^l` (integrated gradients from the all-zero baseline of block `l`'s input, right
Riemann sum with `m` steps, the paper's approximation; the later blocks see the scaled input).
One backward pass per target row (per integration step batch, for integrated gradients), so
these methods score the rows of `score(targets=...)` only. Each text is rerun alone at its own
length, with grad, through the model's own modules (hooks replace a block's input); the clean
pass's captures are not reused because a gradient needs the graph.

Sign convention: the issue's and Mohebbi et al.'s `|Σ_d|` (absolute value after summing over the
hidden axis); inseq and captum return signed sums, and some papers take `‖·‖₂` over `d` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from vzcore.batch import Batch
from vzcore.capture import LayerOrder, distinct, eager_attention, hooks
from vzcore.methods.registry import register_method
from vzcore.ops.rollout import normalize_rows

__all__ = ["GradientConfig", "IntegratedGradientsConfig", "grad_x_input", "integrated_gradients"]

READOUTS = ("auto", "head", "norm")


@dataclass(frozen=True)
class GradientConfig:
    # "auto": the LM head's prediction where the model has one, else "norm"; "head" insists on
    # the head; "norm": the L2 norm of the target's final representation.
    readout: str = "auto"
    token: int | None = None  # explain this token id at every target row instead of the default word

    def __post_init__(self):
        if self.readout not in READOUTS:
            raise ValueError(f"unknown readout {self.readout!r}; choose from: {', '.join(READOUTS)}")


@dataclass(frozen=True)
class IntegratedGradientsConfig(GradientConfig):
    steps: int = 20  # Riemann steps from the zero baseline to the input

    def __post_init__(self):
        super().__post_init__()
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")


def _model(batch: Batch, config: GradientConfig) -> tuple[nn.Module, bool]:
    """Return the module to run and whether its output is the LM head's logits."""
    lm = batch.handle.lm
    if config.readout == "head" and lm is None:
        raise ValueError(f"readout='head' needs a model with an LM head; {batch.handle.name!r} was loaded without one")
    if lm is not None and config.readout != "norm":
        return lm, True
    return batch.handle.model, False


@contextmanager
def _block_inputs(batch: Batch, layers: list[int], replace) -> Iterator[None]:
    """Replace block `l`'s hidden-state input `h` by `replace(l, h)` for `l` in `layers` during the context."""
    spec = batch.handle.family
    blocks = spec.blocks(batch.handle.model)
    order = LayerOrder(blocks)  # a block shared by several layers (ALBERT) is called once per layer
    handles: list = []

    def pre(module, args, kwargs):
        layer = order.enter(module)
        if layer not in layers:
            return None
        if args:
            return (replace(layer, args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": replace(layer, kwargs["hidden_states"])}

    with hooks(handles):
        for block in distinct([blocks[layer] for layer in layers]):
            handles.append(block.register_forward_pre_hook(pre, with_kwargs=True))
        yield


def _forward(batch: Batch, module: nn.Module, ids: torch.Tensor):
    """Run `module` on unpadded copies of one text `ids: [c, n]` with grad enabled."""
    kwargs = {"use_cache": False} if batch.causal else {}
    with eager_attention(batch.handle.model):
        return module(input_ids=ids, attention_mask=torch.ones_like(ids), **kwargs)


def _scalars(config: GradientConfig, out, use_head: bool, ids: torch.Tensor, row: int, causal: bool) -> torch.Tensor:
    """Return `f` of target `row` for every copy of one text `ids: [c, n]` (unpadded): `[c]`."""
    if not use_head:
        return out.last_hidden_state[:, row].norm(dim=-1)
    logits = out.logits[:, row].float()  # `[c, V]`
    if config.token is not None:
        token = torch.full_like(ids[:, 0], config.token)
    elif causal and row + 1 < ids.shape[1]:
        token = ids[:, row + 1]  # the text's own next token
    else:
        token = logits.detach().argmax(-1)  # the model's own top prediction
    scores = logits.log_softmax(-1) if causal else logits
    return scores.gather(1, token[:, None])[:, 0]


def _per_text(batch: Batch, config: GradientConfig, attribute) -> torch.Tensor:
    """Run `attribute(module, use_head, ids [1, n_k], rows [t_k]) -> [L, t_k, n_k]` per text, unpadded, and
    return the placed, normalised maps `[b, L, n, n]` (CPU).

    Each text runs alone at its own length: the backward passes are per target anyway, and the
    gradients (whose sum over the hidden axis can cancel strongly) are then bit-for-bit those of
    the text scored alone, so padding changes nothing.
    """
    if batch.input_ids is None:
        raise ValueError("gradient methods rerun the model: the batch must carry input_ids")
    module, use_head = _model(batch, config)
    b, t, n = batch.rows.shape[0], batch.rows.shape[1], batch.n
    raw = torch.zeros((b, len(batch.layers), t, n), dtype=torch.float64)
    for k in range(b):
        length = int(batch.lengths[k])
        real = batch.row_mask[k].nonzero()[:, 0]
        got = attribute(module, use_head, batch.input_ids[k : k + 1, :length], batch.rows[k, real].tolist())
        raw[k, :, real, :length] = got.abs().double().cpu()
    valid = batch.valid_pairs(batch.rows, batch.row_mask)[:, None]
    maps, _ = normalize_rows(torch.where(valid, raw, 0.0))
    return batch.place_rows(maps)


@register_method("grad_x_input", GradientConfig, needs_targets=True, reads_tokens=True)
def grad_x_input(batch: Batch, config: GradientConfig) -> torch.Tensor:
    """Gradient × input of the target's prediction w.r.t. each block's input tokens, `|Σ_d|`, rows normalised."""
    d = batch.handle.config.hidden_size

    def attribute(module, use_head, ids, rows):
        probes = {la: torch.zeros((1, ids.shape[1], d), device=ids.device, requires_grad=True) for la in batch.layers}
        inputs: dict[int, torch.Tensor] = {}

        def replace(layer, h):
            inputs[layer] = h.detach()
            return h + probes[layer].to(h.dtype)  # ∂f/∂probe is ∂f/∂x^l; earlier layers keep their paths

        out_rows = []
        with torch.enable_grad(), _block_inputs(batch, batch.layers, replace):
            out = _forward(batch, module, ids)
            for r, row in enumerate(rows):
                f = _scalars(config, out, use_head, ids, row, batch.causal).sum()
                grads = torch.autograd.grad(f, [probes[la] for la in batch.layers], retain_graph=r < len(rows) - 1)
                per_layer = [(g * inputs[la])[0].sum(-1) for g, la in zip(grads, batch.layers, strict=True)]
                out_rows.append(torch.stack(per_layer))
        return torch.stack(out_rows, 1)  # `[L, t_k, n_k]`

    return _per_text(batch, config, attribute)


@register_method("integrated_gradients", IntegratedGradientsConfig, needs_targets=True, reads_tokens=True)
def integrated_gradients(batch: Batch, config: IntegratedGradientsConfig) -> torch.Tensor:
    """Integrated gradients of the target's prediction from a zero input at each block, `|Σ_d|`, rows normalised."""
    m = config.steps
    per_pass = _steps_per_pass(batch, m)

    def attribute(module, use_head, ids, rows):
        n = ids.shape[1]
        alphas = torch.arange(1, m + 1, dtype=torch.float64, device=ids.device) / m  # right Riemann sum
        # The blocks' clean inputs from this text alone (not the padded batch's), for bit-exact padding.
        clean: dict[int, torch.Tensor] = {}
        with torch.no_grad(), _block_inputs(batch, batch.layers, lambda la, h: clean.setdefault(la, h)):
            _forward(batch, module, ids)
        out = torch.zeros((len(batch.layers), len(rows), n), dtype=torch.float64, device=ids.device)
        for li, layer in enumerate(batch.layers):
            x = clean[layer][0]  # `[n, d]`
            for k0 in range(0, m, per_pass):
                a = alphas[k0 : k0 + per_pass]
                scaled = (a[:, None, None] * x.double()[None]).to(x.dtype).detach().requires_grad_()  # `[c, n, d]`
                with torch.enable_grad(), _block_inputs(batch, [layer], lambda _, h, s=scaled: s.to(h.dtype)):
                    res = _forward(batch, module, ids.expand(a.shape[0], -1))
                    for r, row in enumerate(rows):
                        f = _scalars(config, res, use_head, ids.expand(a.shape[0], -1), row, batch.causal).sum()
                        (g,) = torch.autograd.grad(f, [scaled], retain_graph=r < len(rows) - 1)
                        out[li, r] += (g.double().sum(0) * x.double()).sum(-1)
        return out / m

    return _per_text(batch, config, attribute)


def _steps_per_pass(batch: Batch, steps: int) -> int:
    """How many integration steps share one forward pass under the memory budget (a rough activation count)."""
    cfg = batch.handle.config
    n = batch.n
    per_copy = 4 * n * batch.handle.num_layers * (12 * cfg.hidden_size + 2 * cfg.num_attention_heads * n)
    return max(1, min(steps, batch.memory_budget // max(1, per_copy)))
