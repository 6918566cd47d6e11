"""Shared fixtures: tiny seeded models of every supported family, built from configs."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest
import torch
import transformers

import vzcore

# Where the tiny models live: "cpu" (default) or e.g. "cuda" to run the suite on a GPU.
DEVICE = os.environ.get("VZ_TEST_DEVICE", "cpu")
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
VOCAB = 120


def _tiny(kind: str, attn: str = "eager") -> torch.nn.Module:
    torch.manual_seed(0)
    if kind in ("bert", "roberta", "electra"):
        cls = {
            "bert": transformers.BertConfig,
            "roberta": transformers.RobertaConfig,
            "electra": transformers.ElectraConfig,
        }[kind]
        cfg = cls(vocab_size=VOCAB, max_position_embeddings=64, **TINY)
        if kind == "electra":
            cfg.embedding_size = 16
    elif kind == "gpt2":
        cfg = transformers.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_inner=64, n_positions=64)
    else:
        cls = {
            "llama": transformers.LlamaConfig,
            "mistral": transformers.MistralConfig,
            "qwen2": transformers.Qwen2Config,
        }[kind]
        cfg = cls(vocab_size=VOCAB, num_key_value_heads=2, max_position_embeddings=64, **TINY)
    cfg._attn_implementation = attn
    model = transformers.AutoModel.from_config(cfg, attn_implementation=attn).eval()
    # Random init leaves LayerNorm at identity and biases at zero: perturb them so the algebra is exercised.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias") or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.to(DEVICE)


FAMILY_KINDS = ["bert", "roberta", "electra", "gpt2", "llama", "mistral", "qwen2"]


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, vzcore.ModelHandle]:
    """One tiny handle per model type (never mutate these)."""
    return {kind: vzcore.load_model(_tiny(kind)) for kind in FAMILY_KINDS}


@pytest.fixture(scope="session", params=FAMILY_KINDS)
def tiny(request, tiny_models) -> vzcore.ModelHandle:
    return tiny_models[request.param]


@pytest.fixture(scope="session")
def tiny_builder():
    """Build a fresh tiny model of a kind (e.g. with another attention implementation)."""
    return _tiny


@pytest.fixture(scope="session")
def minilm() -> vzcore.ModelHandle:
    try:
        return vzcore.load_model("minilm")
    except ModuleNotFoundError as e:
        pytest.skip(str(e))


def sample_ids(seed: int, n: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (n,), generator=g).tolist()
