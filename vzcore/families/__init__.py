"""Architecture families, keyed by `config.model_type`."""

from __future__ import annotations

from vzcore.families.albert import ALBERT
from vzcore.families.bert import BERT
from vzcore.families.deberta import DEBERTA_V2
from vzcore.families.distilbert import DISTILBERT
from vzcore.families.gemma import GEMMA, GEMMA2, GEMMA3
from vzcore.families.gpt2 import GPT2
from vzcore.families.llama import LLAMA
from vzcore.families.modernbert import MODERNBERT
from vzcore.families.moe import MOE
from vzcore.families.olmo import OLMO2
from vzcore.families.opt import OPT
from vzcore.families.parallel import GPT_NEOX, GPTJ, PHI
from vzcore.families.phi3 import PHI3
from vzcore.families.spec import (
    LAYOUTS,
    PARALLEL,
    POST_NORM,
    PRE_NORM,
    SANDWICH,
    BlockShape,
    FamilySpec,
    Geometry,
    Layout,
    Norm,
    NormKind,
    SplitFinish,
    UnsupportedModelError,
    linear_params,
)
from vzcore.families.wav2vec2 import HUBERT, HUBERT_STABLE, WAV2VEC2, WAV2VEC2_STABLE

__all__ = [
    "LAYOUTS",
    "PARALLEL",
    "POST_NORM",
    "PRE_NORM",
    "SANDWICH",
    "BlockShape",
    "FamilySpec",
    "Geometry",
    "Layout",
    "Norm",
    "NormKind",
    "SplitFinish",
    "UnsupportedModelError",
    "family_for",
    "family_specs",
    "linear_params",
    "list_families",
]

_FAMILIES: tuple[FamilySpec, ...] = (
    BERT,
    GPT2,
    LLAMA,
    GEMMA,
    GEMMA2,
    GEMMA3,
    OLMO2,
    MOE,
    GPT_NEOX,
    GPTJ,
    PHI,
    PHI3,
    OPT,
    MODERNBERT,
    DISTILBERT,
    DEBERTA_V2,
    ALBERT,
    WAV2VEC2,
    WAV2VEC2_STABLE,
    HUBERT,
    HUBERT_STABLE,
)


def family_specs() -> tuple[FamilySpec, ...]:
    """Return every registered family's spec, in registration order."""
    return _FAMILIES


def list_families() -> dict[str, tuple[str, ...]]:
    """Return each family's name with the `model_type`s it covers."""
    return {f.name: f.model_types for f in _FAMILIES}


def family_for(config) -> FamilySpec:
    """Return the family spec for a Hugging Face `config`, or raise listing the supported ones."""
    model_type = getattr(config, "model_type", None)
    supported = ", ".join(dict.fromkeys(t for f in _FAMILIES for t in f.model_types))  # a type once
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"encoder-decoder models ({model_type}) are scored by vzcore.seq2seq.score_pairs, not here; "
            f"supported model types: {supported}"
        )
    for family in _FAMILIES:
        if model_type in family.model_types:
            return family.variant(config) if family.variant else family
    raise UnsupportedModelError(f"unsupported model type {model_type!r}; supported model types: {supported}")
