"""Check a scoring job's arguments and inspect its model, before any model weights load.

Every refusal is a `JobError` (the command line exits 2 with its message) naming what is wrong
and the choices. The model is inspected through `vzcore.locate_model`: its config and tokenizer
are read, its weights are not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.score.config import JobConfig
from jobs.score.data import FORMATS
from jobs.score.targets import TargetSpec, parse_targets
from vzcore.families import UnsupportedModelError
from vzcore.inputs import check_max_length, check_tokenizer
from vzcore.loading import ModelNotFoundError, ModelSource, locate_model, max_input_length
from vzcore.maps import resolve_layers
from vzcore.methods.registry import UnknownMethodError, check_applicable, get_method, split_options
from vzcore.precision import PRECISIONS
from vzcore.store.forms import StoreForm, parse_store_form
from vzcore.store.layout import WRITE_PROBE
from vzcore.store.root import folder_state

__all__ = ["STORE_DTYPES", "CheckedJob", "JobError", "check_job", "check_output"]

STORE_DTYPES = ("float16", "float32")


class JobError(ValueError):
    """Bad arguments or a store that does not match: raised before any model is loaded."""


@dataclass(frozen=True)
class CheckedJob:
    """A job whose arguments passed every check, with what the checks learnt."""

    cfg: JobConfig
    method_options: dict[str, dict]  # per method, its resolved config as JSON-safe values
    model: ModelSource
    tokenizer: Any
    layers: list[int]  # the stored block indices, ascending
    form: StoreForm = field(default_factory=StoreForm)  # how maps are stored (`--store`)
    targets: TargetSpec = field(default_factory=TargetSpec)  # which rows (`--targets`)

    @property
    def max_length(self) -> int | None:
        return self.cfg.max_length or max_input_length(self.model.config, self.tokenizer, self.model.family)


def check_job(cfg: JobConfig) -> CheckedJob:
    """Check every argument of `cfg` and inspect its model; raise `JobError` on the first problem."""
    options = _check_methods(cfg)
    _check_numbers(cfg)
    form, targets = _check_forms(cfg)
    _check_precision(cfg)
    _check_device(cfg)
    _check_input(cfg)
    model, tokenizer = _inspect_model(cfg)
    _check_max_length(cfg, model, tokenizer)
    _check_applicable(cfg, model, targets)
    if form.words:
        _check_word_boundaries(cfg, tokenizer)
    if targets.kind == "mask" and getattr(tokenizer, "mask_token_id", None) is None:
        raise JobError(f"--targets mask: the tokenizer of {cfg.model} has no mask token; use --targets last or all")
    layers = _check_layers(cfg, model.geometry.num_layers)
    return CheckedJob(cfg, options, model, tokenizer, layers, form, targets)


# Three words the tokenizer must tell apart for `--store words` to pool anything meaningful.
WORD_PROBE = "one two three"


def _check_word_boundaries(cfg: JobConfig, tokenizer) -> None:
    """Refuse `--store words` for a tokenizer whose word ids do not separate words: a slow tokenizer
    has none (every token would be a word), and some fast ones put a whole text in one word (Gemma's:
    its pre-tokenizer does not split on spaces), which would pool each text to one column."""
    if not getattr(tokenizer, "is_fast", False):
        raise JobError(
            f"--store words: the tokenizer of {cfg.model} is not a fast tokenizer, so it gives no word boundaries "
            "and every token would be a word of its own; store the token maps (--store dense, auto or top-k)"
        )
    found = {w for w in tokenizer(WORD_PROBE, add_special_tokens=False).word_ids() if w is not None}
    if len(found) != len(WORD_PROBE.split()):
        raise JobError(
            f"--store words: the tokenizer of {cfg.model} does not mark word boundaries (it reads {WORD_PROBE!r} "
            f"as {len(found)} word(s)), so its words would not be words; store the token maps (--store dense, auto "
            "or top-k)"
        )


def _check_forms(cfg: JobConfig) -> tuple[StoreForm, TargetSpec]:
    try:
        return parse_store_form(cfg.store_form), parse_targets(cfg.targets)
    except ValueError as err:
        raise JobError(str(err)) from None


def _check_applicable(cfg: JobConfig, model: ModelSource, targets: TargetSpec) -> None:
    """Refuse methods this job cannot serve: target-row methods without `--targets` (they score
    chosen rows only) and post-norm-only methods on a pre-norm model."""

    chosen = [get_method(m) for m in cfg.methods]
    rows_only = [m.name for m in chosen if m.needs_targets]
    if rows_only and targets.all_rows:  # with --targets the step scores only the chosen rows, as they need
        raise JobError(
            f"{', '.join(rows_only)} score target rows only (one backward pass per target), and --targets all "
            "asks for every row: choose the rows with --targets last, mask or column=NAME"
        )
    try:
        check_applicable(chosen, model.family, targets_given=True, model=cfg.model)
    except ValueError as err:
        raise JobError(str(err)) from None


def _jsonable(obj):
    return json.loads(json.dumps(obj, default=str))


def _check_methods(cfg: JobConfig) -> dict[str, dict]:
    if not cfg.methods:
        raise JobError("no methods given; see `vz methods`")
    try:
        chosen = [get_method(m) for m in cfg.methods]
        configs = split_options(chosen, dict(cfg.options))
    except (UnknownMethodError, TypeError, ValueError) as err:
        raise JobError(str(err)) from None
    return {name: _jsonable(c.__dict__) for name, c in configs.items()}


def _check_numbers(cfg: JobConfig) -> None:
    if cfg.part_size is not None and cfg.part_size < 1:
        raise JobError(f"--part-size must be at least 1, not {cfg.part_size}")
    if cfg.batch_size < 1:
        raise JobError(f"--batch-size must be at least 1, not {cfg.batch_size}")
    if (cfg.actors or 0) < 0:
        raise JobError(f"--actors must be at least 0 (0: in this process), not {cfg.actors}")
    if not cfg.part_mb > 0:
        raise JobError(f"--part-mb must be more than 0, not {cfg.part_mb}")
    if cfg.limit is not None and cfg.limit < 0:
        raise JobError(f"--limit must be 0 (all rows) or more, not {cfg.limit}")
    if cfg.store_dtype not in STORE_DTYPES:
        raise JobError(f"--store-dtype must be one of {', '.join(STORE_DTYPES)}, not {cfg.store_dtype!r}")


def _check_input(cfg: JobConfig) -> None:
    if cfg.format is not None and cfg.format not in FORMATS:
        raise JobError(f"unknown --format {cfg.format!r}; choose from: {', '.join(FORMATS)}")


def _check_max_length(cfg: JobConfig, model: ModelSource, tokenizer: Any) -> None:
    """Refuse a token limit that cannot hold one text token beside the special tokens the tokenizer
    adds, or that is longer than the model takes."""

    most = max_input_length(model.config, tokenizer, model.family)
    try:
        check_max_length(cfg.max_length, tokenizer, most, option="--max-length ")
    except ValueError as err:
        raise JobError(str(err)) from None


def _check_precision(cfg: JobConfig) -> None:
    if cfg.precision not in PRECISIONS:
        raise JobError(f"unknown --precision {cfg.precision!r}; choose from: {', '.join(PRECISIONS)}")
    if cfg.precision == "tf32" and cfg.device == "cpu":
        raise JobError("--precision tf32 needs CUDA devices; use bfloat16 on CPUs")


def _check_device(cfg: JobConfig) -> None:
    try:
        cfg.where.check()
    except ValueError as err:
        raise JobError(str(err)) from None
    if cfg.device == "cuda" and cfg.actors == 0:
        import torch

        if not torch.cuda.is_available():
            raise JobError("--device cuda with --actors 0 needs a GPU in this process, and torch sees none")


def _inspect_model(cfg: JobConfig) -> tuple[ModelSource, Any]:
    try:
        model = locate_model(cfg.model)
        tokenizer = model.load_tokenizer()
        check_tokenizer(tokenizer, f"model {cfg.model!r}")
    except UnsupportedModelError as err:
        if "encoder-decoder" in str(err):  # a hub encoder-decoder named without pair options
            raise JobError(
                f"{cfg.model} is an encoder-decoder: `vz score` scores it with --source-column (and --target-column)"
            ) from None
        raise JobError(str(err)) from None
    except (ModelNotFoundError, ModuleNotFoundError, ValueError) as err:
        raise JobError(str(err)) from None
    except Exception as err:
        raise JobError(f"cannot read model {cfg.model!r}: {type(err).__name__}: {err}") from None
    return model, tokenizer


def _check_layers(cfg: JobConfig, count: int) -> list[int]:
    """Return the blocks to store, ascending (a store's `layers` are)."""
    try:
        return sorted(resolve_layers(cfg.layers, count))
    except ValueError as err:
        raise JobError(str(err)) from None


def check_output(cfg: JobConfig) -> None:
    """Check that `--out` is a vz store, empty or new (never a folder of someone's files, overwrite
    or not) and can be written (a probe file, removed at once)."""

    location = cfg.location
    try:
        state, names = folder_state(location)
    except Exception as err:
        why = location.access_problem(err) or f"{type(err).__name__}: {err}"
        raise JobError(f"cannot read output {cfg.out}: {why}") from None
    if state == "other":
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise JobError(
            f"output {cfg.out} is not empty and not a vz store (it holds {shown}); nothing was touched: "
            "choose a new or empty folder"
        )

    probe = WRITE_PROBE
    try:
        if location.is_url:
            fs, path = location.filesystem(probe)
            fs.pipe_file(path, b"ok")
            fs.rm_file(path)
        else:
            out = Path(cfg.out)
            if out.exists() and not out.is_dir():
                raise JobError(f"output {cfg.out} exists and is not a directory")
            out.mkdir(parents=True, exist_ok=True)
            (out / probe).write_bytes(b"ok")
            (out / probe).unlink()
    except JobError:
        raise
    except Exception as err:
        raise JobError(f"cannot write to output {cfg.out}: {type(err).__name__}: {err}") from None
