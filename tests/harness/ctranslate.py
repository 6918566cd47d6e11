"""Write a tiny seeded Whisper as a CTranslate2 (faster-whisper) folder, from the format's definition.

This is the converter's inverse, written independently of `vzcore.ctranslate`: CTranslate2's
binary layout (version 6: names with a closing NUL, a type id and a byte count per tensor, aliases
at the end), its Whisper tensor names, the fused attention projections with a zero key bias, and
the folder's `config.json` and `tokenizer.json`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import torch
import transformers

__all__ = ["SPECIAL", "tiny_whisper", "write_faster_whisper"]

_TYPE_IDS = {np.dtype(np.float32): 0, np.dtype(np.int8): 1, np.dtype(np.int16): 2, np.dtype(np.float16): 4}
WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran"]
# Whisper's special tokens, after the words (an English-only vocabulary's order)
SPECIAL = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|translate|>", "<|transcribe|>", "<|notimestamps|>"]


def tiny_whisper(seed: int = 0) -> transformers.WhisperForConditionalGeneration:
    """A 2+2-layer Whisper (hidden 32, 4 heads, 16 mel bins, 40 source frames), seeded, in eval mode."""
    torch.manual_seed(seed)
    vocab = len(WORDS) + 1 + len(SPECIAL)  # the words, <unk>, the special tokens
    config = transformers.WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=16,
        d_model=32,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_source_positions=40,
        max_target_positions=24,
        pad_token_id=vocab - len(SPECIAL),
        eos_token_id=vocab - len(SPECIAL),
        bos_token_id=vocab - len(SPECIAL),
        decoder_start_token_id=vocab - len(SPECIAL) + 1,
    )
    model = transformers.WhisperForConditionalGeneration(config).eval()
    with torch.no_grad():  # random biases and norms, so a swapped or dropped one shows
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name:
                p.normal_(0.0, 0.5 if "layer_norm" not in name or name.endswith("bias") else 0.1).add_(
                    1.0 if "layer_norm.weight" in name else 0.0
                )
    return model


def _ct2_tensors(model: transformers.WhisperForConditionalGeneration) -> dict[str, np.ndarray]:
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    out: dict[str, np.ndarray] = {}
    c = model.config

    def attention(src: str, dst: str, cross: bool) -> None:
        zero = np.zeros_like(sd[f"{src}.v_proj.bias"])
        if cross:
            out[f"{dst}/linear_0/weight"] = sd[f"{src}.q_proj.weight"]
            out[f"{dst}/linear_0/bias"] = sd[f"{src}.q_proj.bias"]
            out[f"{dst}/linear_1/weight"] = np.concatenate([sd[f"{src}.k_proj.weight"], sd[f"{src}.v_proj.weight"]])
            out[f"{dst}/linear_1/bias"] = np.concatenate([zero, sd[f"{src}.v_proj.bias"]])
            last = "linear_2"
        else:
            out[f"{dst}/linear_0/weight"] = np.concatenate([sd[f"{src}.{p}_proj.weight"] for p in ("q", "k", "v")])
            out[f"{dst}/linear_0/bias"] = np.concatenate([sd[f"{src}.q_proj.bias"], zero, sd[f"{src}.v_proj.bias"]])
            last = "linear_1"
        out[f"{dst}/{last}/weight"] = sd[f"{src}.out_proj.weight"]
        out[f"{dst}/{last}/bias"] = sd[f"{src}.out_proj.bias"]

    def norm(src: str, dst: str) -> None:
        out[f"{dst}/gamma"], out[f"{dst}/beta"] = sd[f"{src}.weight"], sd[f"{src}.bias"]

    for stack in ("encoder", "decoder"):
        out[f"{stack}/num_heads"] = np.array(getattr(c, f"{stack}_attention_heads"), np.int16)
        out[f"{stack}/pre_norm"] = np.array(1, np.int8)
        out[f"{stack}/activation"] = np.array(3, np.int8)
        norm(f"model.{stack}.layer_norm", f"{stack}/layer_norm")
        out[f"{stack}/position_encodings/encodings"] = sd[f"model.{stack}.embed_positions.weight"]
        for i in range(getattr(c, f"{stack}_layers")):
            src, dst = f"model.{stack}.layers.{i}", f"{stack}/layer_{i}"
            norm(f"{src}.self_attn_layer_norm", f"{dst}/self_attention/layer_norm")
            attention(f"{src}.self_attn", f"{dst}/self_attention", cross=False)
            if stack == "decoder":
                norm(f"{src}.encoder_attn_layer_norm", f"{dst}/attention/layer_norm")
                attention(f"{src}.encoder_attn", f"{dst}/attention", cross=True)
            norm(f"{src}.final_layer_norm", f"{dst}/ffn/layer_norm")
            for j, fc in enumerate(("fc1", "fc2")):
                out[f"{dst}/ffn/linear_{j}/weight"] = sd[f"{src}.{fc}.weight"]
                out[f"{dst}/ffn/linear_{j}/bias"] = sd[f"{src}.{fc}.bias"]
    for conv in ("conv1", "conv2"):
        out[f"encoder/{conv}/weight"] = sd[f"model.encoder.{conv}.weight"]
        out[f"encoder/{conv}/bias"] = sd[f"model.encoder.{conv}.bias"]
    out["decoder/embeddings/weight"] = sd["model.decoder.embed_tokens.weight"]
    for flag in ("scale_embeddings", "alibi", "start_from_zero_embedding"):
        out[f"decoder/{flag}"] = np.array(0, np.int8)
    return out


def _string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def write_model_bin(path: Path, tensors: dict[str, np.ndarray], aliases: dict[str, str], spec: str = "WhisperSpec"):
    parts = [struct.pack("<I", 6), _string(spec), struct.pack("<II", 3, len(tensors))]
    for name, array in tensors.items():
        data = np.ascontiguousarray(array).tobytes()
        parts += [_string(name), struct.pack("<B", array.ndim), struct.pack(f"<{array.ndim}I", *array.shape)]
        parts += [struct.pack("<BI", _TYPE_IDS[array.dtype], len(data)), data]
    parts.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        parts += [_string(alias), _string(target)]
    path.write_bytes(b"".join(parts))


def write_faster_whisper(
    model: transformers.WhisperForConditionalGeneration,
    folder: Path,
    dtype=np.float32,
    int8: tuple[str, ...] = (),
    edit=None,
) -> Path:
    """Write `model` as a faster-whisper folder: float tensors as `dtype`; the tensors named in `int8`
    quantised per row as CTranslate2 does (`round(w · 127 / max|row|)`, the scale beside it);
    `edit(tensors)` may change the tensors before they are written (to make broken files)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.astype(dtype) if v.dtype.kind == "f" else v for k, v in _ct2_tensors(model).items()}
    for name in int8:
        w = tensors[name].astype(np.float32)
        scale = (127.0 / np.abs(w).max(axis=1)).astype(np.float32)
        tensors[name] = np.round(w * scale[:, None]).astype(np.int8)
        tensors[name + "_scale"] = scale
    if edit is not None:
        edit(tensors)
    write_model_bin(folder / "model.bin", tensors, {"decoder/projection/weight": "decoder/embeddings/weight"})
    vocab = {w: i for i, w in enumerate([*WORDS, "<unk>"])}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = Whitespace()
    tokenizer.add_special_tokens(SPECIAL)
    tokenizer.save(str(folder / "tokenizer.json"))
    ids = {t: tokenizer.token_to_id(t) for t in SPECIAL}
    settings = {"alignment_heads": [[1, 0]], "lang_ids": [ids["<|en|>"]], "suppress_ids": [], "suppress_ids_begin": []}
    (folder / "config.json").write_text(json.dumps(settings))
    return folder
