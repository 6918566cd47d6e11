"""CTranslate2 (faster-whisper) Whisper folders to transformers' `WhisperForConditionalGeneration`.

A faster-whisper folder holds `model.bin` (CTranslate2's binary: a header, then named tensors),
`config.json` (alignment heads, language ids, suppressed tokens — not a transformers config) and
`tokenizer.json`. transformers cannot read it. The tensors map one to one onto transformers'
parameters, except that CTranslate2 fuses the attention's input projections (self-attention:
query, key and value in one matrix; cross-attention: key and value) and stores Whisper's key bias,
which Whisper has not, as zeros. The config is built from the tensors' shapes plus what the folder
says; nothing is read from a hub.

Format (CTranslate2's `model_spec.py` writes it; binary versions 2 to 6 are read): little-endian
`uint32` version, the spec's name (`uint16` length, bytes with a closing NUL), `uint32` revision,
`uint32` tensor count; per tensor its name, `uint8` rank, `uint32` dims, `uint8` type id,
`uint32` byte count (version 4 on; before it an item size and an element count), the bytes; then
`uint32` alias count and (alias, target) name pairs. int8 weights come with a per-row `<name>_scale`
(`int8 = round(w · scale)`), which is undone here.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

__all__ = [
    "CTranslate2Error",
    "Tensor",
    "is_ctranslate2_folder",
    "load_whisper",
    "read_header",
    "read_tensors",
    "whisper_config",
    "whisper_state_dict",
]

MODEL_FILE = "model.bin"
# CTranslate2's DataType enum, in order.
_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16, 5: "bfloat16"}
_ITEM_DTYPES = {1: np.int8, 2: np.float16, 4: np.float32}  # binary versions < 4 give an item size only
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


class CTranslate2Error(ValueError):
    """A file that is not a CTranslate2 model, or one whose layout this converter does not know."""


@dataclass(frozen=True)
class Tensor:
    """Where one named tensor's bytes are in `model.bin`."""

    shape: tuple[int, ...]
    dtype: Any  # a numpy dtype, or "bfloat16"
    offset: int
    nbytes: int


@dataclass(frozen=True)
class Header:
    """A `model.bin`'s spec name, revision, tensors (no data read) and aliases (alias -> tensor name)."""

    version: int
    spec: str
    revision: int
    tensors: dict[str, Tensor]
    aliases: dict[str, str]


def _take(f: BinaryIO, fmt: str) -> Any:
    size = struct.calcsize("<" + fmt)
    raw = f.read(size)
    if len(raw) != size:
        raise CTranslate2Error("model.bin ends early: truncated or not a CTranslate2 model")
    values = struct.unpack("<" + fmt, raw)
    return values[0] if len(values) == 1 else values


def _name(f: BinaryIO) -> str:
    length = _take(f, "H")
    raw = f.read(length)
    if len(raw) != length:
        raise CTranslate2Error("model.bin ends early: truncated or not a CTranslate2 model")
    try:
        return raw.rstrip(b"\0").decode("utf-8")
    except UnicodeDecodeError as err:
        raise CTranslate2Error("model.bin holds a name that is not text: not a CTranslate2 model") from err


def read_header(path: Path) -> Header:
    """Read a `model.bin`'s header and tensor index, seeking past the data."""
    size = Path(path).stat().st_size
    with Path(path).open("rb") as f:
        version = _take(f, "I")
        if not 2 <= version <= 6:
            raise CTranslate2Error(f"{path}: binary version {version} is not a CTranslate2 model this reads (2 to 6)")
        spec, revision, count = _name(f), _take(f, "I"), _take(f, "I")
        tensors: dict[str, Tensor] = {}
        for _ in range(count):
            name = _name(f)
            rank = _take(f, "B")
            dims = _take(f, f"{rank}I") if rank else ()
            shape = (dims,) if isinstance(dims, int) else tuple(dims)
            if version >= 4:
                type_id, nbytes = _take(f, "B"), _take(f, "I")
                if type_id not in _DTYPES:
                    raise CTranslate2Error(f"{path}: tensor {name} has an unknown type id {type_id}")
                dtype = _DTYPES[type_id]
            else:
                item, count_items = _take(f, "B"), _take(f, "I")
                dtype, nbytes = _ITEM_DTYPES[item], item * count_items
            tensors[name] = Tensor(shape, dtype, f.tell(), nbytes)
            if f.seek(nbytes, 1) > size:
                raise CTranslate2Error(f"{path} ends early, inside tensor {name}: truncated")
        aliases = {}
        if version >= 3:
            for _ in range(_take(f, "I")):
                alias = _name(f)
                aliases[alias] = _name(f)
    return Header(version, spec, revision, tensors, aliases)


def is_ctranslate2_folder(path: Path) -> bool:
    """Whether `path` is a folder whose `model.bin` starts like a CTranslate2 model (a cheap look, no data read)."""
    model = Path(path) / MODEL_FILE
    if not model.is_file():
        return False
    with model.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        version, length = struct.unpack("<IH", head[:6])
        name = head[6:] + f.read(max(length - 2, 0))
    return 2 <= version <= 6 and name.rstrip(b"\0").endswith(b"Spec")


def read_tensors(path: Path, header: Header | None = None, names: set[str] | None = None) -> dict[str, np.ndarray]:
    """Read a `model.bin`'s tensors (all, or `names` and their scales): floating ones as float32,
    int8 weights de-quantised by their scales, integer settings as they are; aliases included."""
    header = header or read_header(path)
    raw: dict[str, np.ndarray] = {}
    with Path(path).open("rb") as f:
        for name, t in header.tensors.items():
            if names is not None and name not in names and name.removesuffix("_scale") not in names:
                continue
            f.seek(t.offset)
            data = f.read(t.nbytes)
            if t.dtype == "bfloat16":  # numpy has no bfloat16: widen the 16 bits into float32's high half
                array = (np.frombuffer(data, np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(data, t.dtype)
            if array.size != int(np.prod(t.shape, dtype=np.int64)):
                raise CTranslate2Error(f"{path}: tensor {name} holds {array.size} values, its shape says {t.shape}")
            raw[name] = array.reshape(t.shape)
    out = {}
    for name, array in raw.items():
        if name.endswith("_scale") and name[: -len("_scale")] in raw:
            continue
        scale = raw.get(name + "_scale")
        if scale is not None:  # int8 = round(w * scale), one scale per output row
            array = array.astype(np.float32) / scale.astype(np.float32).reshape(-1, *([1] * (array.ndim - 1)))
        out[name] = array.astype(np.float32) if array.dtype.kind == "f" or scale is not None else array
    for alias, target in header.aliases.items():
        if target in out:
            out.setdefault(alias, out[target])
    return out


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
