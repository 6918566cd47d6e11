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

__all__ = [
    "AUDIO_KINDS",
    "FAMILY_KINDS",
    "SEQ2SEQ_KINDS",
    "TINY_AUDIO",
    "TINY_CONFIGS",
    "TINY_SEQ2SEQ",
    "save_tiny_t5",
    "tiny_audio_model",
    "tiny_model",
    "tiny_pair",
    "tiny_seq2seq",
]


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


def _seq2seq_text(cls, **extra) -> Callable[[], transformers.PretrainedConfig]:
    # BART-style configs: two layers per stack, 4 heads, hidden 32; ids 0–2 are special
    sizes = dict(encoder_layers=2, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4)
    sizes |= dict(encoder_ffn_dim=64, decoder_ffn_dim=64)
    special = dict(bos_token_id=0, pad_token_id=1, eos_token_id=2, decoder_start_token_id=2)
    return lambda: cls(vocab_size=VOCAB, d_model=32, max_position_embeddings=64, **sizes, **special, **extra)


def _t5(cls, **extra) -> Callable[[], transformers.PretrainedConfig]:
    # relative position buckets small enough that the suite's lengths reach the logarithmic ones
    return lambda: cls(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=16,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        **extra,
    )


def _whisper() -> transformers.PretrainedConfig:
    # 8 mel bins, 32 input frames: 16 encoder positions after the stride-2 front end
    return transformers.WhisperConfig(
        vocab_size=VOCAB,
        num_mel_bins=8,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=16,
        max_target_positions=32,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=0,
        begin_suppress_tokens=None,
        suppress_tokens=None,
    )


# encoder–decoder model type -> its tiny config (seeded weights from `tiny_seq2seq`)
TINY_SEQ2SEQ: dict[str, Callable[[], transformers.PretrainedConfig]] = {
    "t5": _t5(transformers.T5Config),
    "mt5": _t5(transformers.MT5Config, feed_forward_proj="gated-gelu"),
    "bart": _seq2seq_text(transformers.BartConfig),
    "mbart": _seq2seq_text(transformers.MBartConfig),
    "marian": _seq2seq_text(transformers.MarianConfig),
    "whisper": _whisper,
}
SEQ2SEQ_KINDS = list(TINY_SEQ2SEQ)


def tiny_seq2seq(kind: str, attn: str = "eager", device: str = "cpu") -> torch.nn.Module:
    """Return the tiny seeded `*ForConditionalGeneration` model of `kind` (the same weights every call)."""
    torch.manual_seed(0)
    cfg = TINY_SEQ2SEQ[kind]()
    cfg._attn_implementation = attn
    auto = transformers.AutoModelForSpeechSeq2Seq if kind == "whisper" else transformers.AutoModelForSeq2SeqLM
    model = auto.from_config(cfg, attn_implementation=attn).eval()
    with torch.no_grad():  # norms at identity and zero biases would leave parts of the algebra unexercised
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model.to(device)


def tiny_pair(model: torch.nn.Module, seed: int, n_src: int = 9, n_tgt: int = 7) -> dict[str, torch.Tensor]:
    """Return one seeded input pair for a tiny encoder–decoder (a batch of one): source ids (Whisper: random
    input features of its full window, `n_src` ignored) and decoder ids starting with its start token."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    if cfg.model_type == "whisper":
        frames = 2 * cfg.max_source_positions
        source = {"input_features": torch.randn(1, cfg.num_mel_bins, frames, generator=g)}
    else:
        source = {"input_ids": torch.randint(3, VOCAB, (1, n_src), generator=g)}
    start = torch.tensor([[cfg.decoder_start_token_id]])
    decoder = torch.cat([start, torch.randint(3, VOCAB, (1, n_tgt - 1), generator=g)], 1)
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in {**source, "decoder_input_ids": decoder}.items()}


def _audio(cls, stable: bool) -> Callable[[], transformers.PretrainedConfig]:
    # the real feature encoder's kernels and strides (320 samples a frame: 20 ms at 16 kHz) with 16 channels;
    # post-norm models with base's group norm in the feature encoder, pre-norm ones with large's layer norms
    return lambda: cls(
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=8,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=stable,
        feat_extract_norm="layer" if stable else "group",
        **TINY,
    )


# audio encoder kind -> its tiny config: both block layouts of each family (`do_stable_layer_norm`)
TINY_AUDIO: dict[str, Callable[[], transformers.PretrainedConfig]] = {
    "wav2vec2": _audio(transformers.Wav2Vec2Config, stable=False),
    "wav2vec2-stable": _audio(transformers.Wav2Vec2Config, stable=True),
    "hubert": _audio(transformers.HubertConfig, stable=False),
    "hubert-stable": _audio(transformers.HubertConfig, stable=True),
}
AUDIO_KINDS = list(TINY_AUDIO)


def tiny_audio_model(kind: str, device: str = "cpu") -> torch.nn.Module:
    """Return the tiny seeded audio encoder (`Wav2Vec2Model`, `HubertModel`) of `kind`, eager attention."""
    torch.manual_seed(0)
    cfg = TINY_AUDIO[kind]()
    model = transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():  # norms at identity and zero biases would leave parts of the algebra unexercised
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model.to(device)


def save_tiny_t5(path, tokenizer) -> str:
    """Save a tiny seeded T5 (`tiny_seq2seq("t5")`'s shape) with `tokenizer` (its vocabulary, its [PAD] as the
    decoder's start token, its [SEP] / end token as end of sequence) to `path`: loadable by path in any process."""
    torch.manual_seed(0)
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    cfg = TINY_SEQ2SEQ["t5"]()
    cfg.vocab_size = len(tokenizer)
    cfg.pad_token_id = cfg.decoder_start_token_id = int(tokenizer.pad_token_id)
    cfg.eos_token_id = int(eos)
    model = transformers.T5ForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # as `tiny_seq2seq`: norms off identity, so every part of the algebra is exercised
        for name, p in model.named_parameters():
            if "norm" in name.lower():
                p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)
