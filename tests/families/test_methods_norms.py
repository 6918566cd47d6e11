"""Independent references for the norm-based methods (+RES, +RES+LN, GlobEnc, ALTI), from the
published formulas with plain loops over (i, j, h) on the model's own modules and weights.

Nothing here calls vzcore's capture or ops code: the blocks' inputs, attention weights and norm
inputs come from hooks and the model's outputs, the value vectors from the model's projections.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vzcore
from tests.support import sample_ids

TOL = 1e-5
BERT_LIKE = ("bert", "roberta", "electra")


def _parts(handle, block):
    """Return `(first_norm_or_None, closing_norm_or_None, value_fn, W_O [d, H·d_h], b_O [d] | None)` per family."""
    kind = handle.config.model_type
    if kind in BERT_LIKE:
        att = block.attention
        return (
            att.output.LayerNorm,
            block.output.LayerNorm,
            lambda h: att.self.value(h),
            att.output.dense.weight,
            att.output.dense.bias,
        )
    if kind == "albert":
        att = block.attention
        return att.LayerNorm, block.full_layer_layer_norm, att.value, att.dense.weight, att.dense.bias
    if kind == "deberta-v2":
        att = block.attention
        w_o = att.output.dense
        return att.output.LayerNorm, block.output.LayerNorm, att.self.value_proj, w_o.weight, w_o.bias
    if kind == "distilbert":
        att = block.attention
        return block.sa_layer_norm, block.output_layer_norm, att.v_lin, att.out_lin.weight, att.out_lin.bias
    if kind == "gpt2":
        d = handle.config.hidden_size
        attn = block.attn
        return None, None, lambda h: attn.c_attn(block.ln_1(h))[..., 2 * d :], attn.c_proj.weight.t(), attn.c_proj.bias
    if kind == "modernbert":  # fused `[q | k | v]`; the first block's attention norm is the identity
        d = handle.config.hidden_size
        return None, None, lambda h: block.attn.Wqkv(block.attn_norm(h))[..., 2 * d :], block.attn.Wo.weight, None
    if kind == "gpt_neox":  # fused per head: `[q_h | k_h | v_h]`
        att, heads = block.attention, handle.config.num_attention_heads

        def neox_values(h):
            qkv = att.query_key_value(block.input_layernorm(h)).unflatten(-1, (heads, 3, -1))
            return qkv[..., 2, :].flatten(-2)

        return None, None, neox_values, att.dense.weight, att.dense.bias
    if kind in ("wav2vec2", "hubert"):  # post-norm (base) or pre-norm (`do_stable_layer_norm`: large)
        att = block.attention
        if handle.config.do_stable_layer_norm:
            return None, None, lambda h: att.v_proj(block.layer_norm(h)), att.out_proj.weight, att.out_proj.bias
        return block.layer_norm, block.final_layer_norm, att.v_proj, att.out_proj.weight, att.out_proj.bias
    if kind == "gptj":
        return None, None, lambda h: block.attn.v_proj(block.ln_1(h)), block.attn.out_proj.weight, None
    att = block.self_attn
    if kind == "phi":
        return None, None, lambda h: att.v_proj(block.input_layernorm(h)), att.dense.weight, att.dense.bias
    if kind == "olmo2":  # no norm before attention
        return None, None, lambda h: att.v_proj(h), att.o_proj.weight, None
    if kind == "phi3":  # fused `[q | k | v]`: the values are the last key/value heads' columns
        cfg = handle.config
        width = cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
        return None, None, lambda h: att.qkv_proj(block.input_layernorm(h))[..., -width:], att.o_proj.weight, None
    if kind == "opt":
        value = lambda h: att.v_proj(block.self_attn_layer_norm(h))  # noqa: E731
        return None, None, value, att.out_proj.weight, att.out_proj.bias
    # the LLaMA-like blocks: llama, mistral, qwen2/3, gemma 1/2/3, the mixtures of experts
    return None, None, lambda h: att.v_proj(block.input_layernorm(h)), att.o_proj.weight, att.o_proj.bias


@torch.no_grad()
def _trace(handle, ids):
    """Run the model once; return per block its input, attention weights, and norms' inputs/outputs."""
    blocks = handle.family.blocks(handle.model)
    calls: dict[int, list[dict]] = {}  # per module, one record per call: a shared layer (ALBERT) runs per layer
    hooks = []
    for block in {id(b): b for b in blocks}.values():
        record = calls.setdefault(id(block), [])
        hooks.append(
            block.register_forward_pre_hook(
                lambda m, a, kw, record=record: record.append({"x": (a[0] if a else kw["hidden_states"])[0]}),
                with_kwargs=True,
            )
        )
        first, closing, *_ = _parts(handle, block)
        for name, mod in (("ln1", first), ("ln2", closing)):
            if mod is not None:
                put = lambda key, value, record=record: record[-1].__setitem__(key, value)  # noqa: E731
                hooks.append(mod.register_forward_pre_hook(lambda m, a, n=name, put=put: put(n + "_in", a[0][0])))
                hooks.append(mod.register_forward_hook(lambda m, a, o, n=name, put=put: put(n + "_out", o[0])))
    inputs = torch.tensor([ids], device=handle.device)  # token ids, or an audio encoder's input values
    try:
        out = handle.model(**{"input_values" if handle.family.audio else "input_ids": inputs}, output_attentions=True)
    finally:
        for h in hooks:
            h.remove()
    runs = {key: iter(record) for key, record in calls.items()}
    seen = {k: next(runs[id(block)]) for k, block in enumerate(blocks)}  # layers run in order
    for k in seen:
        seen[k]["attn"] = out.attentions[k][0].double().cpu()  # `[H, n, n]`, the model's own weights
    return blocks, seen


def _vectors(handle, block, seen):
    """Return the plain decomposition: `z[i, j, h]` (head parts), `x [n, d]`, `b_O`, all float64 on the CPU."""
    cfg = handle.config
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    _, _, value_fn, w_o, b_o = _parts(handle, block)
    x = seen["x"].double().cpu()
    v = value_fn(seen["x"][None])[0].double().cpu()  # `[n, H_kv·d_h]`
    n, dh = x.shape[0], v.shape[-1] // kv
    v = v.view(n, kv, dh)
    w_o = w_o.double().cpu().view(-1, heads, dh)  # `[d, H, d_h]`
    a = seen["attn"]
    z = torch.zeros(n, n, heads, x.shape[1], dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            for h in range(heads):
                z[i, j, h] = a[h, i, j] * (w_o[:, h] @ v[j, h // (heads // kv)])  # GQA: the head's kv group
    bias = b_o.double().cpu() if b_o is not None else torch.zeros(x.shape[1], dtype=torch.float64)
    return z, x, bias


def _res(z, x):
    """`y_ij = Σ_h z_ijh + δ_ij x_i`: `[n, n, d]`."""
    y = z.sum(2).clone()
    for i in range(x.shape[0]):
        y[i, i] += x[i]
    return y


def _ln_linear(v, norm, stats_of):
    """γ ⊙ (v − mean v) / sqrt(var(stats_of) + ε) for vectors `v: [..., d]` of one target row."""
    sigma = torch.sqrt(stats_of.var(unbiased=False) + norm.eps)
    return norm.weight.double().cpu() * (v - v.mean(-1, keepdim=True)) / sigma


def _normalise(c):
    return c / c.sum(-1, keepdim=True)


@torch.no_grad()
def reference(handle, ids, method):
    """Return layer-wise maps `[L, n, n]` of `method` (float64), from the published formula."""
    blocks, seen = _trace(handle, ids)
    n = seen[0]["x"].shape[0]  # tokens, or an audio encoder's frames
    maps = []
    for k, block in enumerate(blocks):
        z, x, b_o = _vectors(handle, block, seen[k])
        y = _res(z, x)
        s = y.sum(1) + b_o  # the state after attention, `[n, d]`
        first, closing, *_ = _parts(handle, block)
        if first is not None:  # the decomposition adds up to the norm's own input
            np.testing.assert_allclose(s, seen[k]["ln1_in"].double().cpu(), atol=1e-5)
        c = torch.zeros(n, n, dtype=torch.float64)
        for i in range(n):
            if method == "attention_norm_res":
                c[i] = y[i].norm(dim=-1)
            elif method in ("attention_norm_res_ln", "globenc") or (method == "alti" and first is not None):
                t = _ln_linear(y[i], first, s[i])  # T_i(x_j): `[n, d]`
                if method == "attention_norm_res_ln":
                    c[i] = t.norm(dim=-1)
                elif method == "globenc":
                    c[i] = _ln_linear(t, closing, seen[k]["ln2_in"][i].double().cpu()).norm(dim=-1)
                else:
                    out = seen[k]["ln1_out"][i].double().cpu()  # the norm's real output
                    c[i] = (out.abs().sum() - (out - t).abs().sum(-1)).clamp(min=0)
            elif method == "alti":  # Ferrando & Voita 2024: head parts and the residual against s_i
                total = s[i].abs().sum()
                for j in range(n):
                    for h in range(z.shape[2]):
                        c[i, j] += (total - (s[i] - z[i, j, h]).abs().sum()).clamp(min=0)
                c[i, i] += (total - (s[i] - x[i]).abs().sum()).clamp(min=0)
        if handle.family.causal:
            c = torch.tril(c)
        maps.append(_normalise(c))
    return torch.stack(maps).numpy()


def _rolled(maps):
    out, acc = [], None
    for m in maps:
        acc = m if acc is None else m @ acc
        out.append(acc)
    return np.stack(out)


@pytest.mark.parametrize("method", ["attention_norm_res", "attention_norm_res_ln", "globenc", "alti"])
def test_matches_the_published_formula(tiny, method):
    if not vzcore.methods.get_method(method).supports(tiny.family):
        pytest.skip(f"{method} is for post-norm encoders")
    ids = sample_ids(30, 8)
    rollout = {"globenc": "globenc_rollout", "alti": "alti_rollout"}.get(method)
    got = vzcore.score(tiny, [ids], methods=[method] + ([rollout] if rollout else []))[0]
    ref = reference(tiny, ids, method)
    np.testing.assert_allclose(got.scores[method], ref, atol=TOL, rtol=0)
    if rollout:
        np.testing.assert_allclose(got.scores[rollout], _rolled(ref), atol=TOL, rtol=0)


@torch.no_grad()
def test_attention_and_attention_norm_match_the_published_formulas(tiny):
    """Raw attention (head mean) and Kobayashi et al. 2020's `‖Σ_h a_ij^h f^h(x_j)‖` on every family."""
    ids = sample_ids(33, 7)
    got = vzcore.score(tiny, [ids], methods=["attention", "attention_norm"])[0].scores
    blocks, seen = _trace(tiny, ids)
    for k, block in enumerate(blocks):
        np.testing.assert_allclose(got["attention"][k], seen[k]["attn"].mean(0), atol=1e-6)
        z, _, _ = _vectors(tiny, block, seen[k])
        np.testing.assert_allclose(got["attention_norm"][k], _normalise(z.sum(2).norm(dim=-1)), atol=TOL)


def test_chunking_changes_nothing(tiny):
    ids = sample_ids(31, 9)
    names = ("attention_norm_res", "globenc", "alti")
    methods = [m for m in names if vzcore.methods.get_method(m).supports(tiny.family)]
    big = vzcore.score(tiny, [ids], methods=methods)[0]
    small = vzcore.score(tiny, [ids], methods=methods, memory_budget=1)[0]
    for m in methods:
        np.testing.assert_allclose(small.scores[m], big.scores[m], atol=1e-6, rtol=0, err_msg=m)


def test_post_norm_methods_refuse_decoders_clearly(tiny_models):
    for kind in ("gpt2", "llama"):
        for method in ("attention_norm_res_ln", "globenc", "globenc_rollout"):
            with pytest.raises(ValueError, match=r"post-norm encoders only.*use one of alti, .*attention_norm_res,"):
                vzcore.score(tiny_models[kind], [[5, 6, 7]], methods=["value_zeroing", method])


def test_attention_norm_keeps_its_numbers_beside_the_new_methods(tiny_models):
    handle = tiny_models["bert"]
    ids = sample_ids(32, 7)
    alone = vzcore.score(handle, [ids], methods=["attention_norm"])[0].scores["attention_norm"]
    every = vzcore.score(handle, [ids], methods=["attention_norm", "alti", "globenc", "value_zeroing"])[0]
    np.testing.assert_array_equal(every.scores["attention_norm"], alone)
