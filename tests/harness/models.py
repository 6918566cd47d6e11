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


def _decoder(cls, **extra) -> Callable[[], transformers.PretrainedConfig]:
    return lambda: cls(vocab_size=VOCAB, num_key_value_heads=2, max_position_embeddings=64, **TINY, **extra)


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
    "qwen3": _decoder(transformers.Qwen3Config, head_dim=8),
    "gemma": _decoder(transformers.GemmaConfig, head_dim=8),
    # sliding windows of 4 tokens and soft-capping at 5: both bite on the suite's texts
    "gemma2": _decoder(
        transformers.Gemma2Config, head_dim=8, sliding_window=4, attn_logit_softcapping=5.0, query_pre_attn_scalar=8
    ),
    "gemma3_text": _decoder(
        transformers.Gemma3TextConfig,
        head_dim=8,
        sliding_window=4,
        attn_logit_softcapping=5.0,
        layer_types=["sliding_attention", "full_attention"],
    ),
    "olmo2": _decoder(transformers.Olmo2Config),
    "mixtral": _decoder(transformers.MixtralConfig, num_local_experts=4, num_experts_per_tok=2),
    "qwen2_moe": _decoder(
        transformers.Qwen2MoeConfig,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        shared_expert_intermediate_size=32,
    ),
    "qwen3_moe": _decoder(
        transformers.Qwen3MoeConfig, head_dim=8, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32
    ),
    "gpt_neox": lambda: transformers.GPTNeoXConfig(vocab_size=VOCAB, max_position_embeddings=64, **TINY),
    "gptj": lambda: transformers.GPTJConfig(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=64, rotary_dim=4
    ),
    "phi": lambda: transformers.PhiConfig(vocab_size=VOCAB, max_position_embeddings=64, qk_layernorm=True, **TINY),
    "phi3": _decoder(transformers.Phi3Config, pad_token_id=0),
    "opt": lambda: transformers.OPTConfig(
        vocab_size=VOCAB, ffn_dim=64, max_position_embeddings=64, word_embed_proj_dim=32, pad_token_id=1, **TINY
    ),
    # local attention over 4 tokens in the first layer, global in the second; LayerNorms with biases
    "modernbert": lambda: transformers.ModernBertConfig(
        vocab_size=VOCAB,
        max_position_embeddings=64,
        local_attention=4,
        global_attn_every_n_layers=2,
        norm_bias=True,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        **TINY,
    ),
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
