"""An encoder–decoder loaded for scoring: the whole model (its language-model head greedy-decodes),
its tokenizer, its feature extractor (audio models) and its family spec."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vzcore.families.encdec import EncDecSpec, encdec_family_for
from vzcore.loading import loadable_path, quiet_loading

__all__ = ["Seq2SeqHandle", "load_seq2seq"]


@dataclass
class Seq2SeqHandle:
    """A `*ForConditionalGeneration` model in eval mode with what turns inputs into its ids and features."""

    model: nn.Module  # the whole model: encoder, decoder and language-model head
    tokenizer: Any  # a Hugging Face tokenizer, or None (then sources and targets are id lists)
    family: EncDecSpec
    name: str
    feature_extractor: Any = None  # audio models: turns waveforms into input features

    @property
    def config(self) -> Any:
        return self.model.config

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def num_layers(self, site: str) -> int:
        """Return how many blocks the stack holding `site` has."""
        return len(self.family.blocks(self.model, site))

    @property
    def seconds_per_source(self) -> float | None:
        """Audio models: seconds per encoder position (mel hop × the front end's stride of 2), else None."""
        if not self.family.audio:
            return None
        fe = self.feature_extractor
        hop, rate = (getattr(fe, "hop_length", 160), getattr(fe, "sampling_rate", 16000)) if fe else (160, 16000)
        return 2 * hop / rate


def load_seq2seq(
    model: Seq2SeqHandle | nn.Module | str | Path,
    *,
    tokenizer: Any = None,
    feature_extractor: Any = None,
    device: str | torch.device | None = None,
) -> Seq2SeqHandle:
    """Load an encoder–decoder (a local path, a hub name or a `*ForConditionalGeneration` module) for scoring.

    The family is resolved from `config.model_type` first: an unsupported architecture fails before
    weights load. Models load with eager attention (the fast path reads the attention weights).
    """
    if isinstance(model, Seq2SeqHandle):
        return model
    if isinstance(model, nn.Module):
        family = encdec_family_for(model.config)
        whole: Any = model  # its submodules and methods are reached by name
        if not hasattr(whole, "get_encoder") or whole.get_output_embeddings() is None:
            raise ValueError(
                f"{type(model).__name__} has no language-model head: pass the *ForConditionalGeneration model"
            )
        name = getattr(model.config, "name_or_path", "") or type(model).__name__
        module = model
    else:
        from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoModelForSpeechSeq2Seq

        path = loadable_path(str(model))  # a short name, a path, a faster-whisper folder (converted once)
        family = encdec_family_for(AutoConfig.from_pretrained(path))
        cls: Any = AutoModelForSpeechSeq2Seq if family.audio else AutoModelForSeq2SeqLM
        with quiet_loading():
            module = cls.from_pretrained(path, attn_implementation="eager", dtype=torch.float32)
        name = str(model)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(path)
        if feature_extractor is None and family.audio:
            from transformers import AutoFeatureExtractor

            feature_extractor = AutoFeatureExtractor.from_pretrained(path)
    if device is not None:
        module = module.to(device)
    module.eval()
    return Seq2SeqHandle(module, tokenizer, family, name, feature_extractor)
