"""CTranslate2 (faster-whisper) Whisper folders to transformers' `WhisperForConditionalGeneration`.

A faster-whisper folder holds `model.bin` (CTranslate2's binary: a header, then named tensors),
`config.json` (alignment heads, language ids, suppressed tokens — not a transformers config) and
`tokenizer.json`. transformers cannot read it. The tensors map one to one onto transformers'
parameters, except that CTranslate2 fuses the attention's input projections (self-attention:
query, key and value in one matrix; cross-attention: key and value) and stores Whisper's key bias,
which Whisper has not, as zeros. The config is built from the tensors' shapes plus what the folder
says; nothing is read from a hub.
The binary format is read by `vzcore.ct2format`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vzcore.ct2format import MODEL_FILE, CTranslate2Error, Header, read_header, read_tensors

__all__ = ["CONVERTER_VERSION", "conversion_key", "load_whisper", "whisper_config", "whisper_state_dict"]

# CTranslate2's activation enum: Whisper uses the exact GELU.
_GELU = 3
# Scalars that configure CTranslate2's own decoding, or that `whisper_config` reads from shapes.
_SETTINGS = {
    "activation",
    "alibi",
    "alignment_heads",
    "alignment_layer",
    "num_heads",
    "pre_norm",
    "scale_embeddings",
    "start_from_zero_embedding",
}


def _scalar(tensors: dict[str, np.ndarray], name: str, default: int | None = None) -> int | None:
    value = tensors.get(name)
    return default if value is None else int(np.asarray(value).reshape(-1)[0])


def _heads(settings: dict[str, np.ndarray], stack: str, path: Path) -> int:
    heads = _scalar(settings, f"{stack}/num_heads")
    if heads is None:
        raise CTranslate2Error(f"{path}: no {stack}/num_heads (a CTranslate2 model older than its Whisper support?)")
    return heads


def _layers(names: Any, stack: str) -> int:
    parts = (n.split("/") for n in names)
    return len({p[1] for p in parts if p[0] == stack and p[1].startswith("layer_") and p[1][6:].isdigit()})


def _check_whisper(header: Header, path: Path) -> None:
    if header.spec != "WhisperSpec":
        raise CTranslate2Error(f"{path}: a CTranslate2 {header.spec!r} model; only Whisper (WhisperSpec) converts")


def _special_tokens(folder: Path) -> dict[str, int]:
    """The tokenizer's added tokens (`<|endoftext|>`, `<|en|>`, ...) and their ids, read from `tokenizer.json`."""
    path = folder / "tokenizer.json"
    if not path.is_file():
        raise CTranslate2Error(f"{folder} has no tokenizer.json: a faster-whisper folder ships one beside model.bin")
    added = json.loads(path.read_text(encoding="utf-8")).get("added_tokens", [])
    return {t["content"]: int(t["id"]) for t in added}


def _folder_config(folder: Path) -> dict:
    path = folder / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def whisper_config(folder: Path, header: Header | None = None) -> Any:
    """Build the `WhisperConfig` of a faster-whisper folder from its tensors' shapes, its settings and
    its tokenizer's special tokens (reads the header and a few scalars, not the weights)."""
    from transformers import WhisperConfig

    folder = Path(folder)
    model = folder / MODEL_FILE
    header = header or read_header(model)
    _check_whisper(header, model)
    shapes = {n: t.shape for n, t in header.tensors.items()}
    settings = read_tensors(model, header, {f"{s}/{k}" for s in ("encoder", "decoder") for k in _SETTINGS})
    for stack in ("encoder", "decoder"):
        activation = _scalar(settings, f"{stack}/activation", _GELU)
        if activation != _GELU or _scalar(settings, f"{stack}/pre_norm", 1) != 1:
            raise CTranslate2Error(f"{model}: the {stack} is not Whisper's (pre-norm blocks, exact GELU)")
    if _scalar(settings, "decoder/scale_embeddings", 0) or _scalar(settings, "decoder/alibi", 0):
        raise CTranslate2Error(f"{model}: scaled embeddings or ALiBi are not Whisper's")
    d_model, n_mels, _ = shapes["encoder/conv1/weight"]
    vocab = shapes["decoder/embeddings/weight"][0]
    special = _special_tokens(folder)
    eot, sot = special.get("<|endoftext|>"), special.get("<|startoftranscript|>")
    if eot is None or sot is None:
        raise CTranslate2Error(f"{folder}/tokenizer.json lacks Whisper's <|endoftext|> or <|startoftranscript|>")
    tied = "decoder/projection/weight" not in header.tensors  # an alias of the embeddings, or absent
    return WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=_layers(shapes, "encoder"),
        decoder_layers=_layers(shapes, "decoder"),
        encoder_attention_heads=_heads(settings, "encoder", model),
        decoder_attention_heads=_heads(settings, "decoder", model),
        encoder_ffn_dim=shapes["encoder/layer_0/ffn/linear_0/weight"][0],
        decoder_ffn_dim=shapes["decoder/layer_0/ffn/linear_0/weight"][0],
        max_source_positions=shapes["encoder/position_encodings/encodings"][0],
        max_target_positions=shapes["decoder/position_encodings/encodings"][0],
        activation_function="gelu",
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
        tie_word_embeddings=tied,
        architectures=["WhisperForConditionalGeneration"],
    )


def _split_rows(array: np.ndarray, parts: int) -> list[np.ndarray]:
    if array.shape[0] % parts:
        raise CTranslate2Error(f"a fused projection of {array.shape[0]} rows does not split into {parts}")
    return list(np.split(array, parts, axis=0))


def _attention(out: dict, t: dict, src: str, dst: str, cross: bool) -> None:
    """Unfuse one attention's projections. Self-attention: `linear_0` is query, key and value stacked,
    `linear_1` the output. Cross-attention: `linear_0` the query, `linear_1` key and value, `linear_2`
    the output. CTranslate2 stores the key bias, which Whisper has not, as zeros."""
    names, fused, output = (
        (["k_proj", "v_proj"], "linear_1", "linear_2")
        if cross
        else (["q_proj", "k_proj", "v_proj"], "linear_0", "linear_1")
    )
    weights = _split_rows(t.pop(f"{src}/{fused}/weight"), len(names))
    biases = _split_rows(t.pop(f"{src}/{fused}/bias"), len(names))
    for proj, w, b in zip(names, weights, biases, strict=True):
        out[f"{dst}.{proj}.weight"] = w
        if proj != "k_proj":
            out[f"{dst}.{proj}.bias"] = b
        elif np.abs(b).max(initial=0.0) > 0:
            raise CTranslate2Error(f"{src}/{fused}: a non-zero key bias, which Whisper's attention has not")
    if cross:
        _linear(out, t, f"{src}/linear_0", f"{dst}.q_proj")
    _linear(out, t, f"{src}/{output}", f"{dst}.out_proj")


def _norm(out: dict, t: dict, src: str, dst: str) -> None:
    out[f"{dst}.weight"] = t.pop(f"{src}/gamma")
    out[f"{dst}.bias"] = t.pop(f"{src}/beta")


def _linear(out: dict, t: dict, src: str, dst: str) -> None:
    out[f"{dst}.weight"] = t.pop(f"{src}/weight")
    out[f"{dst}.bias"] = t.pop(f"{src}/bias")


def whisper_state_dict(tensors: dict[str, np.ndarray], config: Any) -> dict[str, np.ndarray]:
    """Map CTranslate2 Whisper tensors onto `WhisperForConditionalGeneration`'s parameter names.

    Every tensor is used or is a known setting; anything else is an error, never silently dropped.
    """
    t = dict(tensors)
    out: dict[str, np.ndarray] = {}
    for conv in ("conv1", "conv2"):
        _linear(out, t, f"encoder/{conv}", f"model.encoder.{conv}")
    out["model.encoder.embed_positions.weight"] = t.pop("encoder/position_encodings/encodings")
    out["model.decoder.embed_positions.weight"] = t.pop("decoder/position_encodings/encodings")
    out["model.decoder.embed_tokens.weight"] = t.pop("decoder/embeddings/weight")
    projection = t.pop("decoder/projection/weight", None)
    if projection is not None and not config.tie_word_embeddings:
        out["proj_out.weight"] = projection
    for stack, layers in (("encoder", config.encoder_layers), ("decoder", config.decoder_layers)):
        _norm(out, t, f"{stack}/layer_norm", f"model.{stack}.layer_norm")
        for i in range(layers):
            src, dst = f"{stack}/layer_{i}", f"model.{stack}.layers.{i}"
            _norm(out, t, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm")
            _attention(out, t, f"{src}/self_attention", f"{dst}.self_attn", cross=False)
            if stack == "decoder":
                _norm(out, t, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm")
                _attention(out, t, f"{src}/attention", f"{dst}.encoder_attn", cross=True)
            _norm(out, t, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm")
            _linear(out, t, f"{src}/ffn/linear_0", f"{dst}.fc1")
            _linear(out, t, f"{src}/ffn/linear_1", f"{dst}.fc2")
    left = sorted(n for n in t if n.split("/")[-1] not in _SETTINGS)
    if left:
        raise CTranslate2Error(f"tensors this converter does not know (not Whisper's layout?): {', '.join(left[:8])}")
    return out


def _generation_config(config: Any, special: dict[str, int], settings: dict) -> Any:
    """What `generate` needs to transcribe: the task and language tokens, as Whisper's own configs say."""
    from transformers import GenerationConfig

    lang_ids = set(settings.get("lang_ids") or ())
    languages = {token: i for token, i in special.items() if i in lang_ids}
    multilingual = config.vocab_size >= 51865  # English-only Whisper vocabularies have 51864 entries
    fields: dict[str, Any] = dict(
        decoder_start_token_id=config.decoder_start_token_id,
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        # in the generation config only: transformers warns when the model config repeats them
        suppress_tokens=settings.get("suppress_ids"),
        begin_suppress_tokens=settings.get("suppress_ids_begin"),
        max_length=config.max_target_positions,
        is_multilingual=multilingual,
        no_timestamps_token_id=special.get("<|notimestamps|>"),
        alignment_heads=settings.get("alignment_heads"),
    )
    if multilingual:
        fields["lang_to_id"] = languages
        fields["task_to_id"] = {"transcribe": special["<|transcribe|>"], "translate": special["<|translate|>"]}
    if "<|startofprev|>" in special:
        fields["prev_sot_token_id"] = special["<|startofprev|>"]
    return GenerationConfig(**fields)


# Raise it whenever a change to this module changes what a conversion writes: it keys the cache entry.
CONVERTER_VERSION = 1


def conversion_key(folder: Path) -> str:
    """What a converted folder depends on besides `model.bin` (which the cache hashes itself): this
    converter's version and the folder's `config.json` and `tokenizer.json`, so that a fix to either
    converts again instead of reading a stale entry."""
    import hashlib

    digest = hashlib.sha256(f"ctranslate2-whisper {CONVERTER_VERSION}".encode())
    for name in ("config.json", "tokenizer.json"):
        path = Path(folder) / name
        digest.update(name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b""))
    return digest.hexdigest()


def load_whisper(folder: Path) -> tuple[Any, Any]:
    """Convert a faster-whisper folder into `(WhisperForConditionalGeneration in float32, WhisperProcessor)`."""
    import torch
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    folder = Path(folder)
    model_file = folder / MODEL_FILE
    header = read_header(model_file)
    config = whisper_config(folder, header)
    state = whisper_state_dict(read_tensors(model_file, header), config)
    with torch.device("meta"):  # no random initialisation of weights about to be replaced
        model = WhisperForConditionalGeneration(config)
    missing, unexpected = model.load_state_dict(
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}, strict=False, assign=True
    )
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "proj_out.weight")]
    if missing or unexpected:
        raise CTranslate2Error(
            f"{folder}: the converted weights do not fit (missing {missing}, unexpected {unexpected})"
        )
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    special = _special_tokens(folder)
    model.generation_config = _generation_config(config, special, _folder_config(folder))
    tokenizer = WhisperTokenizer(tokenizer_file=str(folder / "tokenizer.json"))
    features = WhisperFeatureExtractor(feature_size=config.num_mel_bins)
    return model, WhisperProcessor(feature_extractor=features, tokenizer=tokenizer)
