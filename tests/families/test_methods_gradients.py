"""Independent references for the gradient baselines: for each block and target, replace the
block's input by a fresh leaf (scaled, for integrated gradients), run the whole model, take one
backward pass of the published target scalar, and form `|Σ_d grad · input|`, rows normalised."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import vzcore
from tests.harness.models import FAMILY_KINDS, TINY_CONFIGS
from tests.support import TINY, VOCAB, sample_ids

TOL = 1e-5


def _tiny_lm(kind: str) -> torch.nn.Module:
    """A tiny seeded model of `kind` with its LM head (norms and biases perturbed, as in conftest)."""
    torch.manual_seed(0)
    if kind == "bert":
        cfg = transformers.BertConfig(vocab_size=VOCAB, max_position_embeddings=64, **TINY)
        model = transformers.BertForMaskedLM(cfg)
    elif kind == "deberta-v2":
        model = transformers.DebertaV2ForMaskedLM(TINY_CONFIGS[kind]())
    elif kind == "albert":
        model = transformers.AlbertForMaskedLM(TINY_CONFIGS[kind]())
    elif kind == "distilbert":
        cfg = transformers.DistilBertConfig(
            vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64
        )
        model = transformers.DistilBertForMaskedLM(cfg)
    elif kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=64)
        model = transformers.GPT2LMHeadModel(cfg)
    else:
        cfg = transformers.LlamaConfig(vocab_size=VOCAB, num_key_value_heads=2, max_position_embeddings=64, **TINY)
        model = transformers.LlamaForCausalLM(cfg)
    model.config._attn_implementation = "eager"
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias") or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module", params=["bert", "gpt2", "llama", "distilbert", "deberta-v2", "albert"])
def tiny_lm(request) -> vzcore.ModelHandle:
    handle = vzcore.load_model(_tiny_lm(request.param))
    assert handle.lm is not None and handle.lm.base_model is handle.model
    return handle


def _block_input_leaf(handle, layer: int, value: torch.Tensor | None, seen: dict):
    """Hook block `layer`: record its input in `seen`, and replace it by `value` (a leaf) if given."""
    blocks = handle.family.blocks(handle.model)
    block = blocks[layer]
    application = [b is block for b in blocks[:layer]].count(True)  # a shared layer (ALBERT) runs per layer
    calls = [0]

    def pre(module, args, kwargs):
        calls[0] += 1
        if calls[0] != application + 1:
            return None
        h = args[0] if args else kwargs["hidden_states"]
        seen[layer] = h.detach()
        if value is None:
            return None
        return ((value, *args[1:]), kwargs) if args else (args, {**kwargs, "hidden_states": value})

    return block.register_forward_pre_hook(pre, with_kwargs=True)


def _target(handle, out, ids, i, readout):
    """The published scalar: MLM logit of the top word; causal log-prob of the next token; or ‖h_i‖."""
    if readout == "norm":
        return out.last_hidden_state[0, i].norm()
    logits = out.logits[0, i]
    if handle.family.causal:
        token = ids[i + 1] if i + 1 < len(ids) else int(logits.argmax())
        return torch.log_softmax(logits, -1)[token]
    return logits[int(logits.argmax())]


def _run(handle, module, ids, layer, value, seen):
    hook = _block_input_leaf(handle, layer, value, seen)
    try:
        kwargs = {"use_cache": False} if handle.family.causal else {}
        t = torch.tensor([ids], device=handle.device)
        return module(input_ids=t, attention_mask=torch.ones_like(t), **kwargs)
    finally:
        hook.remove()


def reference(handle, ids, rows, method, readout="auto", steps=5):
    """Return `[L, n, n]` maps (float64), NaN outside `rows`."""
    module = handle.lm if (handle.lm is not None and readout != "norm") else handle.model
    readout = "head" if module is handle.lm else "norm"
    n, layers = len(ids), handle.num_layers
    out = np.full((layers, n, n), np.nan)
    for layer in range(layers):
        seen: dict = {}
        with torch.no_grad():
            _run(handle, module, ids, layer, None, seen)
        x = seen[layer]  # `[1, n, d]`, the block's clean input
        for i in rows:
            alphas = [1.0] if method == "grad_x_input" else [k / steps for k in range(1, steps + 1)]
            total = torch.zeros(n, dtype=torch.float64)
            for a in alphas:
                leaf = (a * x).clone().requires_grad_()
                with torch.enable_grad():
                    f = _target(handle, _run(handle, module, ids, layer, leaf, {}), ids, i, readout)
                    (g,) = torch.autograd.grad(f, leaf)
                total += (g[0].double() * x[0].double()).sum(-1).cpu()
            c = (total / len(alphas)).abs()
            if handle.family.causal:
                c[i + 1 :] = 0
            out[layer, i] = (c / c.sum()).numpy()
    return out


@pytest.mark.parametrize("method", ["grad_x_input", "integrated_gradients"])
def test_matches_the_published_formula_with_a_head(tiny_lm, method):
    ids = sample_ids(40, 7)
    rows = [2, 6]
    opts = {"steps": 5} if method == "integrated_gradients" else {}
    # memory_budget=1: one integration step per forward pass, as the reference runs them
    got = vzcore.score(tiny_lm, [ids], methods=[method], targets=rows, memory_budget=1, **opts)[0].scores[method]
    ref = reference(tiny_lm, ids, rows, method)
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=0)


@pytest.mark.parametrize("kind", FAMILY_KINDS)
def test_headless_models_explain_the_final_norm(tiny_models, kind):
    handle = tiny_models[kind]
    assert handle.lm is None
    ids = sample_ids(41, 6)
    got = vzcore.score(handle, [ids], methods=["grad_x_input"], targets=[1, 5])[0].scores["grad_x_input"]
    # Float32 gradients summed over the hidden axis cancel, so the two orders of operations may differ in
    # the fourth significant digit (seen: 1.3e-5 on an entry of 0.16, DistilBERT): the tolerance is relative
    # too; a wrong formula is off by 1e-1.
    ref = reference(handle, ids, [1, 5], "grad_x_input", readout="norm")
    np.testing.assert_allclose(got, ref, atol=TOL, rtol=2e-4)


def test_readout_norm_on_a_model_with_a_head(tiny_lm):
    ids = sample_ids(42, 6)
    got = vzcore.score(tiny_lm, [ids], methods=["grad_x_input"], targets=[3], readout="norm")[0]
    ref = reference(tiny_lm, ids, [3], "grad_x_input", readout="norm")
    np.testing.assert_allclose(got.scores["grad_x_input"], ref, atol=TOL, rtol=0)


def test_a_given_token_changes_the_explained_scalar(tiny_lm):
    ids = sample_ids(43, 6)
    default = vzcore.score(tiny_lm, [ids], methods=["grad_x_input"], targets=[2])[0].scores["grad_x_input"]
    given = vzcore.score(tiny_lm, [ids], methods=["grad_x_input"], targets=[2], token=7)[0].scores["grad_x_input"]
    assert np.abs(default[:, 2] - given[:, 2]).max() > 1e-3
    np.testing.assert_allclose(given[:, 2].sum(-1), 1.0, atol=1e-6)


def test_batched_integration_steps_only_round_differently(tiny_lm):
    ids = sample_ids(44, 7)
    one = vzcore.score(tiny_lm, [ids], methods=["integrated_gradients"], targets=[4], memory_budget=1, steps=8)[0]
    many = vzcore.score(tiny_lm, [ids], methods=["integrated_gradients"], targets=[4], steps=8)[0]
    np.testing.assert_allclose(many.scores["integrated_gradients"], one.scores["integrated_gradients"], atol=1e-3)


def test_full_maps_are_refused_naming_targets(tiny_models):
    for method in ("grad_x_input", "integrated_gradients"):
        with pytest.raises(ValueError, match=r"pass targets=\[\.\.\.\]"):
            vzcore.score(tiny_models["bert"], [[5, 6, 7]], methods=["value_zeroing", method])


def test_bad_options_are_refused(tiny_models):
    with pytest.raises(ValueError, match="needs a model with an LM head"):
        vzcore.score(tiny_models["bert"], [[5, 6, 7]], methods=["grad_x_input"], targets=[0], readout="head")
    with pytest.raises(ValueError, match="unknown readout"):
        vzcore.score(tiny_models["bert"], [[5, 6, 7]], methods=["grad_x_input"], targets=[0], readout="logits")
    with pytest.raises(ValueError, match="steps must be at least 1"):
        vzcore.score(tiny_models["bert"], [[5, 6, 7]], methods=["integrated_gradients"], targets=[0], steps=0)


def test_heads_are_kept_only_when_the_checkpoint_has_them(tmp_path):
    _tiny_lm("bert").save_pretrained(tmp_path / "mlm")
    assert vzcore.load_model(str(tmp_path / "mlm")).lm is not None
    assert vzcore.load_model(str(tmp_path / "mlm"), head=False).lm is None
    _tiny_lm("bert").bert.save_pretrained(tmp_path / "base")  # saved without its head
    assert vzcore.load_model(str(tmp_path / "base")).lm is None
    wrong = transformers.ElectraForPreTraining(
        transformers.ElectraConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=1, num_attention_heads=4)
    )
    wrong.save_pretrained(tmp_path / "disc")  # a discriminator: no masked-LM head weights
    assert vzcore.load_model(str(tmp_path / "disc")).lm is None
