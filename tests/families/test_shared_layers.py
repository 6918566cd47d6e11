"""ALBERT runs one shared layer as every layer: layer i's map is the i-th application of that layer.

The reference here reads nothing of vzcore's: it embeds the text, then applies ALBERT's shared
layer by hand once per layer, re-running each application once per zeroed token (the value
projection's output row set to zero) and comparing outputs by cosine distance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

import vzcore
from tests.support import TINY, VOCAB, sample_ids


@torch.no_grad()
def _albert_reference(model, ids: list[int]) -> np.ndarray:
    layer = model.encoder.albert_layer_groups[0].albert_layers[0]
    h = model.encoder.embedding_hidden_mapping_in(model.embeddings(torch.tensor([ids], device=model.device)))
    zeroed: list[int | None] = [None]

    def zero_value(module, args, out):
        if zeroed[0] is None:
            return None
        out = out.clone()
        out[:, zeroed[0]] = 0
        return out

    hook = layer.attention.value.register_forward_hook(zero_value)
    maps = []
    try:
        for _ in range(model.config.num_hidden_layers):
            zeroed[0] = None
            clean = layer(h)[0].double()
            c = np.zeros((len(ids), len(ids)))
            for j in range(len(ids)):
                zeroed[0] = j
                out = layer(h)[0].double()
                c[:, j] = (1 - torch.nn.functional.cosine_similarity(out, clean, dim=-1)).cpu().numpy()
            maps.append(c / c.sum(-1, keepdims=True))
            zeroed[0] = None
            h = layer(h)  # the next application reads this one's output
    finally:
        hook.remove()
    return np.stack(maps)


def test_each_application_of_the_shared_layer_is_its_own_map(tiny_models):
    handle = tiny_models["albert"]
    assert handle.num_layers == 2 and handle.family.blocks(handle.model)[0] is handle.family.blocks(handle.model)[1]
    ids = sample_ids(40, 8)
    got = vzcore.score(handle, [ids], methods=["value_zeroing", "attention"])[0]
    np.testing.assert_allclose(got.scores["value_zeroing"], _albert_reference(handle.model, ids), atol=1e-5, rtol=0)
    attentions = handle.model(input_ids=torch.tensor([ids], device=handle.device), output_attentions=True).attentions
    want = np.stack([a[0].detach().double().mean(0).cpu().numpy() for a in attentions])
    np.testing.assert_allclose(got.scores["attention"], want, atol=1e-6, rtol=0)
    assert np.abs(got.scores["value_zeroing"][0] - got.scores["value_zeroing"][1]).max() > 1e-3


def test_two_layers_inside_one_group_run_are_refused():
    cfg = transformers.AlbertConfig(vocab_size=VOCAB, embedding_size=16, inner_group_num=2, **TINY)
    handle = vzcore.load_model(transformers.AlbertModel(cfg).eval())
    with pytest.raises(ValueError, match="inner_group_num=2 is not supported"):
        vzcore.score(handle, [[5, 6, 7]])
