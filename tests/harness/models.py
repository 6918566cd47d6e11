"""Tiny seeded models of every supported family, built from a config (2 layers, hidden 32), for the
conformance suite (tests/families/test_conformance.py runs on every entry of `TINY_CONFIGS`).

Adding a family: add its spec (vzcore/families/), then one entry here that builds its config; the
conformance suite and the method references then run on it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import transformers

from tests.support import TINY, VOCAB

__all__ = ["FAMILY_KINDS", "TINY_CONFIGS", "tiny_model"]


def _encoder(cls) -> Callable[[], transformers.PretrainedConfig]:
    return lambda: cls(vocab_size=VOCAB, max_position_embeddings=64, **TINY)


def _electra() -> transformers.PretrainedConfig:
    cfg = transformers.ElectraConfig(vocab_size=VOCAB, max_position_embeddings=64, **TINY)
    cfg.embedding_size = 16  # ELECTRA projects smaller embeddings up to the hidden size
    return cfg


def _deberta_v3() -> transformers.PretrainedConfig:
    # DeBERTa-v3's settings: relative attention in both directions (c2p, p2c), log buckets, no
    # absolute positions, shared position keys, relative embeddings normalised
    return transformers.DebertaV2Config(
        vocab_size=VOCAB,
        max_position_embeddings=64,
        relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        position_buckets=8,
        max_relative_positions=16,
        position_biased_input=False,
        share_att_key=True,
        norm_rel_ebd="layer_norm",
        **TINY,
    )


def _albert() -> transformers.PretrainedConfig:
    # two layers from one shared layer (num_hidden_groups=1): each application is its own map
    return transformers.AlbertConfig(vocab_size=VOCAB, max_position_embeddings=64, embedding_size=16, **TINY)


def _decoder(cls) -> Callable[[], transformers.PretrainedConfig]:
    return lambda: cls(vocab_size=VOCAB, num_key_value_heads=2, max_position_embeddings=64, **TINY)


# model type -> its tiny config (seeded weights come from `tiny_model`)
TINY_CONFIGS: dict[str, Callable[[], transformers.PretrainedConfig]] = {
    "bert": _encoder(transformers.BertConfig),
    "roberta": _encoder(transformers.RobertaConfig),
    "electra": _electra,
    "gpt2": lambda: transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=64
    ),
    "llama": _decoder(transformers.LlamaConfig),
    "mistral": _decoder(transformers.MistralConfig),
    "qwen2": _decoder(transformers.Qwen2Config),
    "deberta-v2": _deberta_v3,
    "albert": _albert,
    "distilbert": lambda: transformers.DistilBertConfig(
        vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=64
    ),
}
FAMILY_KINDS = list(TINY_CONFIGS)


def tiny_model(kind: str, attn: str = "eager", device: str = "cpu") -> torch.nn.Module:
    """Return the tiny seeded model of `kind` (the same weights every call) with `attn` attention."""
    torch.manual_seed(0)
    cfg = TINY_CONFIGS[kind]()
    cfg._attn_implementation = attn
    model = transformers.AutoModel.from_config(cfg, attn_implementation=attn).eval()
    # Random init leaves LayerNorm at identity and biases at zero: perturb them so the algebra is exercised.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias") or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.to(device)
