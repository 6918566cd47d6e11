"""Turn texts (or pre-tokenised id lists) into the token sequences that get scored."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from vzcore.loading import ModelHandle

__all__ = ["Encoded", "check_tokenizer", "encode"]


@dataclass
class Encoded:
    """One text's tokens, as the model will see them."""

    token_ids: list[int]
    tokens: list[str]
    word_ids: list[int | None] | None
    offsets: list[tuple[int, int]] | None
    text: str | None
    truncated: bool


def check_tokenizer(tokenizer, name: str) -> None:
    """Raise `ValueError` unless `tokenizer` turns a plain sentence into tokens (a folder saved
    without its tokenizer files loads one that encodes everything to nothing)."""
    probe = "The cat sat on the mat."
    if tokenizer is None or not tokenizer(probe, add_special_tokens=False)["input_ids"]:
        raise ValueError(
            f"{name} has no usable tokenizer (it encodes text to no tokens): save one beside the weights, "
            "e.g. AutoTokenizer.from_pretrained(ORIGINAL).save_pretrained(FOLDER)"
        )


def encode(handle: ModelHandle, texts: Sequence[str | Sequence[int]], max_length: int | None) -> list[Encoded]:
    """Tokenise `texts` with the model's tokenizer (special tokens included) or take id lists as given.

    Inputs longer than `max_length` (default: the model's limit) are truncated with a warning;
    empty inputs are refused.
    """
    limit = max_length or handle.max_length
    tok = handle.tokenizer
    out = []
    for k, item in enumerate(texts):
        if isinstance(item, str):
            if not item.strip():
                raise ValueError(f"text #{k} is empty; nothing to score")
            if tok is None:
                raise ValueError(
                    "this model has no tokenizer: pass one to load_model(..., tokenizer=) or give token id lists"
                )
            enc = tok(
                item,
                truncation=limit is not None,
                max_length=limit,
                return_offsets_mapping=tok.is_fast,
                return_overflowing_tokens=False,
            )
            ids = list(enc["input_ids"])
            if not ids:  # never score nothing: a tokenizer without a vocabulary encodes every text so
                raise ValueError(f"text #{k} encodes to no tokens: the model's tokenizer is not usable")
            full = len(tok(item, add_special_tokens=True)["input_ids"])
            word_ids = enc.word_ids() if tok.is_fast else None
            offsets = [tuple(o) for o in enc["offset_mapping"]] if tok.is_fast else None
            out.append(Encoded(ids, tok.convert_ids_to_tokens(ids), word_ids, offsets, item, full > len(ids)))
        else:
            ids = [int(i) for i in item]
            if not ids:
                raise ValueError(f"token id list #{k} is empty; nothing to score")
            truncated = limit is not None and len(ids) > limit
            ids = ids[:limit] if truncated else ids
            tokens = tok.convert_ids_to_tokens(ids) if tok is not None else [str(i) for i in ids]
            out.append(Encoded(ids, tokens, None, None, None, truncated))
    cut = [k for k, e in enumerate(out) if e.truncated]
    if cut:
        warnings.warn(f"{len(cut)} input(s) longer than {limit} tokens were truncated (first: #{cut[0]})", stacklevel=3)
    return out
