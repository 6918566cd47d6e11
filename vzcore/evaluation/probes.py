"""Turn agreement examples into model inputs: the token ids, the target row and the cue tokens.

Words map to tokens through one encoding of the whole sentence (the tokenizer's own `word_ids`
and character offsets), never by tokenising words alone, which breaks BPE tokenisers (the space
belongs to the next word's first piece). A token belongs to a word when it is not a special token
(`word_ids` None) and its character span overlaps the word's, punctuation at the word's edges
left out (the "." of "committee." is not the cue).

- Masked models: the target word is replaced by the mask token; the row is the mask position.
- Causal models: the input is the prefix before the target word's first token; the row is the
  prefix's last position, the one that predicts the target. An example whose cue does not
  precede the target does not apply; one whose cue includes the row is flagged `cue_at_row`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vzcore.evaluation.blimp import AgreementExample, strip_punctuation

__all__ = ["Probe", "ProbeError", "make_probe", "make_probes", "word_spans", "word_tokens"]


class ProbeError(ValueError):
    """An example that cannot be turned into a probe for this model (the message says why)."""


@dataclass(frozen=True)
class Probe:
    """One example as the model sees it: scored at `row`, with the cue's token positions."""

    example_id: str
    phenomenon: str
    causal: bool
    token_ids: tuple[int, ...]
    tokens: tuple[str, ...]
    row: int  # the target row: the mask position, or the last prefix position for causal models
    cues: tuple[int, ...]  # token positions of the cue (every sub-token, or the first of each word)
    cue_at_row: bool  # causal only: the cue is the predicting position itself
    special: tuple[int, ...]  # positions of special tokens (no word)
    good_ids: tuple[int, ...]  # the target word's tokens in the good sentence (masked: the first only)
    bad_ids: tuple[int, ...]  # the foil's tokens in the bad sentence; empty without a foil

    @property
    def n(self) -> int:
        return len(self.token_ids)


def word_spans(text: str) -> list[tuple[int, int]]:
    """Return the character span of each whitespace word of `text`, edge punctuation left out."""

    spans, pos = [], 0
    for word in text.split():
        start = text.index(word, pos)
        pos = start + len(word)
        core = strip_punctuation(word)
        offset = word.index(core)
        spans.append((start + offset, start + offset + len(core)))
    return spans


def word_tokens(word_ids: Sequence[int | None], offsets: Sequence[tuple[int, int]], span: tuple[int, int]) -> list[int]:
    """Return the positions of the tokens of the word at character `span` (see the module docstring)."""
    ws, we = span
    return [
        k
        for k, (w, (s, e)) in enumerate(zip(word_ids, offsets, strict=True))
        if w is not None and e > s and s < we and e > ws
    ]


def _encode(tokenizer, text: str):
    if not getattr(tokenizer, "is_fast", False):
        raise ProbeError("the model's tokenizer is not a fast tokenizer: it gives no word alignment (word_ids)")
    enc = tokenizer(text, return_offsets_mapping=True)
    return list(enc["input_ids"]), enc.word_ids(), [tuple(o) for o in enc["offset_mapping"]]


def _swap(text: str, span: tuple[int, int], word: str) -> str:
    return text[: span[0]] + word + text[span[1] :]


def make_probe(
    example: AgreementExample, tokenizer, causal: bool, *, first_subtoken: bool = False, max_length: int | None = None
) -> Probe:
    """Return `example`'s probe for a masked (`causal=False`) or causal model; raise `ProbeError` if none."""
    spans = word_spans(example.text)
    target_span = spans[example.target]
    good_ids, gw, go = _encode(tokenizer, example.text)
    good_tokens = word_tokens(gw, go, target_span)
    bad_tokens: list[int] = []
    if example.bad:
        bad_text = _swap(example.text, target_span, example.bad)
        bad_ids, bw, bo = _encode(tokenizer, bad_text)
        bad_span = word_spans(bad_text)[example.target]
        bad_tokens = [bad_ids[k] for k in word_tokens(bw, bo, bad_span)]
    if not good_tokens:
        raise ProbeError(f"{example.id}: the target word has no tokens")
    if causal:
        ids, wids, offs = good_ids, gw, go
        cut = good_tokens[0]
        if cut == 0:
            raise ProbeError(f"{example.id}: the target is the first token, so no prefix predicts it")
        cue_pos = _cue_positions(example, spans, wids, offs, first_subtoken)
        if any(c >= cut for c in cue_pos):
            raise ProbeError(f"{example.id}: the cue does not precede the target (causal models see the prefix only)")
        ids, wids = ids[:cut], wids[:cut]
        row = cut - 1
        good = tuple(good_ids[k] for k in good_tokens)
        bad = tuple(bad_tokens)
    else:
        mask = getattr(tokenizer, "mask_token", None)
        if mask is None:
            raise ProbeError("the model's tokenizer has no mask token")
        masked = _swap(example.text, target_span, mask)
        ids, wids, offs = _encode(tokenizer, masked)
        rows = [k for k, i in enumerate(ids) if i == tokenizer.mask_token_id]
        if len(rows) != 1:
            raise ProbeError(f"{example.id}: the masked text holds {len(rows)} mask tokens, not 1")
        row = rows[0]
        cue_pos = _cue_positions(example, word_spans(masked), wids, offs, first_subtoken)
        good = (good_ids[good_tokens[0]],)
        bad = tuple(bad_tokens[:1])
    if max_length is not None and len(ids) > max_length:
        raise ProbeError(f"{example.id}: {len(ids)} tokens, more than the model's {max_length}")
    if not cue_pos:
        raise ProbeError(f"{example.id}: the cue words have no tokens")
    return Probe(
        example_id=example.id,
        phenomenon=example.phenomenon,
        causal=causal,
        token_ids=tuple(ids),
        tokens=tuple(tokenizer.convert_ids_to_tokens(ids)),
        row=row,
        cues=tuple(cue_pos),
        cue_at_row=causal and row in cue_pos,
        special=tuple(k for k, w in enumerate(wids) if w is None),
        good_ids=good,
        bad_ids=bad,
    )


def _cue_positions(example: AgreementExample, spans, wids, offs, first_subtoken: bool) -> list[int]:
    out: list[int] = []
    for c in example.cues:
        toks = word_tokens(wids, offs, spans[c])
        out += toks[:1] if first_subtoken else toks
    return sorted(set(out))


def make_probes(
    examples: Sequence[AgreementExample], tokenizer, causal: bool, **kwargs
) -> tuple[list[Probe], dict[str, str]]:
    """Return the probes of `examples` that apply, and why each of the others does not (by example id)."""
    probes, skipped = [], {}
    for ex in examples:
        try:
            probes.append(make_probe(ex, tokenizer, causal, **kwargs))
        except ProbeError as err:
            skipped[ex.id] = str(err)
    return probes, skipped
