"""The clean forward pass: what each block saw and computed, taken from the model by hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from vzcore.loading import ModelHandle

__all__ = [
    "LayerCapture",
    "LayerOrder",
    "SiteCapture",
    "capture_layers",
    "capture_sites",
    "distinct",
    "eager_attention",
    "hooks",
    "model_inputs",
    "stream_layers",
]


@dataclass
class LayerCapture:
    """One block's clean tensors for a padded batch (`b` texts, `n` positions, `H` query heads)."""

    x: torch.Tensor  # block input `[b, n, d]` (residual stream)
    attn: torch.Tensor  # attention weights `[b, H, n, n]`, from the model's own attention
    values: torch.Tensor  # value vectors `[b, n, H_kv, d_h]`, bias included
    attn_out: torch.Tensor  # attention output after W_O and its bias `[b, n, d]`
    out: torch.Tensor  # block output `[b, n, d]`
    closing_in: torch.Tensor | None = None  # input of the norm closing the block `[b, n, d]`, where it has one


class LayerOrder:
    """Which layer a block's call runs. A module shared by several layers (ALBERT) runs once per layer
    in every forward pass, in layer order: its k-th call of a pass is the k-th layer it serves, and
    each of those calls is scored as its own layer. One module per layer: the call is its layer."""

    def __init__(self, blocks: Iterable[Any]):
        self._served: dict[int, list[int]] = {}
        for i, block in enumerate(blocks):
            self._served.setdefault(id(block), []).append(i)
        self._calls: dict[int, int] = {}
        self._current: dict[int, int] = {}

    def enter(self, block: Any) -> int:
        """Count a call of `block` starting (from its forward pre-hook) and return the layer it runs."""
        served, k = self._served[id(block)], self._calls.get(id(block), 0)
        self._calls[id(block)] = k + 1
        self._current[id(block)] = served[k % len(served)]
        return self._current[id(block)]

    def current(self, block: Any) -> int:
        """Return the layer the running call of `block` serves (from hooks inside the block)."""
        return self._current[id(block)]


def distinct(blocks: Sequence[Any]) -> list[Any]:
    """Return each module of `blocks` once, in first-seen order."""
    return list({id(b): b for b in blocks}.values())


@contextmanager
def hooks(handles: list) -> Iterator[None]:
    """Remove every hook handle in `handles` on exit, even on error."""
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        handles.clear()


@contextmanager
def eager_attention(model: Any) -> Iterator[None]:
    """Switch `model` to eager attention (which returns weights) for the duration, then back."""
    before = model.config._attn_implementation
    if before == "eager":
        yield
        return
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(before)


def _value_vectors(handle: ModelHandle, proj_out: torch.Tensor) -> torch.Tensor:
    return handle.family.value_part(proj_out, handle.geometry)


class _Captured(Exception):
    """Raised from a hook once every asked-for layer was handed over: the rest of the model need not run."""


def model_inputs(handle: ModelHandle, inputs: torch.Tensor, attention_mask: torch.Tensor | None) -> dict[str, Any]:
    """Return the keyword arguments of one clean call of a single-stack model: token ids and their mask, or
    an audio family's input values alone (a batch of equal lengths: wav2vec2 base's group norm in the
    feature encoder reads every sample, so padding would change the frames)."""
    if handle.family.audio:
        return {"input_values": inputs}
    return {"input_ids": inputs, "attention_mask": attention_mask, "use_cache": False}


@torch.no_grad()
def capture_layers(
    handle: ModelHandle,
    inputs: torch.Tensor,
    attention_mask: torch.Tensor | None,
    layers: Sequence[int],
) -> dict[int, LayerCapture]:
    """Run one clean pass over `inputs` and return the tensors of the chosen `layers`: token ids `[b, n]`
    with their `attention_mask`, or for an audio family input values `[b, samples]` (inputs of equal
    length: the mask is not passed, see `model_inputs`)."""
    got: dict[int, LayerCapture] = {}
    stream_layers(handle, inputs, attention_mask, [sorted(set(layers))], got.update)
    return {i: got[i] for i in layers}


@torch.no_grad()
def stream_layers(
    handle: ModelHandle,
    inputs: torch.Tensor,
    attention_mask: torch.Tensor | None,
    groups: Sequence[Sequence[int]],
    on_group: Callable[[dict[int, LayerCapture]], None],
) -> None:
    """Run one clean pass over `inputs` (as `capture_layers` takes them), calling `on_group(captures)`
    with each group's tensors as soon as the last block of the group has run, from inside the pass.

    `groups` are ascending lists of layers, each group's layers after the previous group's. The pass
    waits while `on_group` runs (the model's own state is then one hidden state and its masks), and
    a group's tensors are dropped once it returns, so at any moment only one group's captures are
    held: a caller that scores each group as it comes holds `O(group · H · n²)` captured bytes, not
    `O(L · H · n²)`. The pass stops after the last group's block (later blocks would be wasted).
    The hooks ignore every module call made by `on_group` itself (scoring runs a block's own norms
    and feed-forward).
    """
    spec, model = handle.family, handle.model
    blocks = spec.blocks(model)
    plan = [sorted(g) for g in groups if g]
    if not plan:
        return
    closes = {g[-1]: k for k, g in enumerate(plan)}  # the layer whose block output completes group k
    got: dict[int, dict[str, torch.Tensor]] = {i: {} for g in plan for i in g}
    order = LayerOrder(blocks)
    handles: list = []
    scoring = [False]  # True while `on_group` runs: its module calls are not the clean pass

    def keep(block: Any, key: str, pick, enter: bool = False):
        def hook(module, args, *rest):
            if scoring[0]:
                return
            i = order.enter(block) if enter else order.current(block)
            if i in got:
                got[i][key] = pick(args, *rest)

        return hook

    def close(block: Any):
        def hook(module, args, output):
            if scoring[0]:
                return None
            i = order.current(block)
            if i in got:
                got[i]["out"] = output[0] if isinstance(output, tuple) else output
            if i in closes:
                captures = {layer: LayerCapture(**got.pop(layer)) for layer in plan[closes[i]]}
                scoring[0] = True
                try:
                    on_group(captures)
                finally:
                    scoring[0] = False
                del captures
                if closes[i] == len(plan) - 1:
                    raise _Captured
            if spec.weights_on_request and isinstance(output, tuple) and len(output) > 1:
                # asked for weights, the model would also keep every layer's in its own output
                return (output[0], *(None for _ in output[1:]))
            return None

        return hook

    def block_input(args, kwargs):
        return args[0] if args else kwargs["hidden_states"]

    def attn_weights(args, output):
        weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        if not isinstance(weights, torch.Tensor):
            raise RuntimeError("the attention module returned no weights; eager attention is required")
        return weights

    with hooks(handles), eager_attention(model):
        for block in distinct([blocks[i] for g in plan for i in g]):
            # first: the pre-hook that tells every later hook of this call which layer it runs
            handles.append(block.register_forward_pre_hook(keep(block, "x", block_input, enter=True), with_kwargs=True))
            handles.append(block.register_forward_hook(close(block)))
            handles.append(block.get_submodule(spec.attention).register_forward_hook(keep(block, "attn", attn_weights)))
            handles.append(
                block.get_submodule(spec.value_proj).register_forward_hook(
                    keep(block, "values", lambda a, o: _value_vectors(handle, o))
                )
            )
            handles.append(
                block.get_submodule(spec.out_proj).register_forward_hook(keep(block, "attn_out", lambda a, o: o))
            )
            closing = spec.shape.after_ffn_sum
            if closing is not None:
                handles.append(
                    block.get_submodule(closing.path).register_forward_pre_hook(
                        keep(block, "closing_in", lambda a, kw: a[0] if a else kw["input"]), with_kwargs=True
                    )
                )
        asked = {"output_attentions": True} if spec.weights_on_request else {}
        try:
            model(**model_inputs(handle, inputs, attention_mask), **asked)
        except _Captured:
            return
    raise RuntimeError(f"the clean pass ended before layers {sorted(got)} ran")


@dataclass
class SiteCapture:
    """One block's clean tensors for one attention site of an encoder–decoder, one input pair (batch of 1).

    `n_t` target positions (the block's stream), `n_s` source positions (the attention's keys and values).
    """

    x: torch.Tensor  # block input `[n_t, d]`
    attn_outs: dict[int, torch.Tensor]  # sublayer index -> that attention's output after W_O `[n_t, d]`
    attn: torch.Tensor  # the site's attention weights `[H, n_t, n_s]`, from the model's own attention
    values: torch.Tensor  # the site's value vectors `[n_s, H, d_h]`, bias included
    out: torch.Tensor  # block output `[n_t, d]`
    kv: torch.Tensor | None  # the encoder states the block's cross-attention reads `[n_src, d]` (decoder blocks)


@torch.no_grad()
def capture_sites(
    model: Any, spec: Any, inputs: dict[str, torch.Tensor], sites: Sequence[str], layers: Mapping[str, Sequence[int]]
) -> dict[tuple[str, int], SiteCapture]:
    """Run one clean pass of an encoder–decoder (`spec`: an `EncDecSpec`) on `inputs` (a batch of one)
    and return the tensors of each site's chosen `layers[site]`, keyed by `(site, layer)`."""
    got: dict[tuple[str, int], dict[str, Any]] = {}
    handles: list = []

    def keep(store: dict[str, Any], key: str, pick):
        def hook(module, args, *rest):
            store[key] = pick(args, *rest)

        return hook

    def first(o: Any) -> torch.Tensor:
        return o[0] if isinstance(o, tuple) else o

    with hooks(handles), eager_attention(model):
        for site in sites:
            blocks = spec.blocks(model, site)
            stack = spec.stack(site)
            for layer in layers[site]:
                store: dict[str, Any] = {"outs": {}}
                got[(site, layer)] = store
                block = blocks[layer]
                handles.append(
                    block.register_forward_pre_hook(
                        keep(store, "x", lambda a, kw: first(a[0] if a else kw["hidden_states"])), with_kwargs=True
                    )
                )
                handles.append(block.register_forward_hook(keep(store, "out", lambda a, o: first(o))))
                for k, sub in enumerate(stack.sublayers):
                    if sub.kind == "ffn":
                        continue
                    attention = block.get_submodule(sub.path)
                    handles.append(attention.get_submodule(spec.out).register_forward_hook(_keep_out(store, k)))
                    value = attention.get_submodule(spec.value)
                    if sub.kind == "cross":  # the encoder states: its value projection's input
                        handles.append(value.register_forward_hook(keep(store, "kv", lambda a, o: a[0])))
                    if k == spec.site_sublayer(site):
                        index = spec.weights_index
                        handles.append(attention.register_forward_hook(keep(store, "attn", lambda a, o, i=index: o[i])))
                        handles.append(value.register_forward_hook(keep(store, "values", lambda a, o: o)))
        model(**inputs, use_cache=False)
    out = {}
    for (site, layer), store in got.items():
        attn = store["attn"]
        if not isinstance(attn, torch.Tensor):
            raise RuntimeError("the attention module returned no weights; eager attention is required")
        heads = attn.shape[1]
        out[(site, layer)] = SiteCapture(
            x=store["x"][0],
            attn_outs={k: o[0] for k, o in store["outs"].items()},
            attn=attn[0],
            values=store["values"][0].unflatten(-1, (heads, -1)),
            out=store["out"][0],
            kv=store["kv"][0] if "kv" in store else None,
        )
    return out


def _keep_out(store: dict[str, Any], k: int):
    def hook(module, args, output):
        store["outs"][k] = output

    return hook
