"""Cue alignment on speech: do a decoder token's cross-attention maps point at the audio of its word?

The speech counterpart of `metrics.cue_share` (Mohebbi et al.'s homophone study scores Whisper's
cross-attention the same way): for each word of a transcript, the rows of its tokens in a cross map
(`[decoder tokens, encoder frames]`) are averaged and the strongest frame is taken, among the frames
that hold audio; a *hit* is a strongest frame inside the word's own frames (`vzcore.audio.frame_span`
of its start and end times). The chance of a hit for a frame drawn uniformly is the word's share of
the audio's frames (`chance_hits`). Pure: maps, token texts and frame ranges in, numbers out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

__all__ = ["alignment_hits", "chance_hits", "predicting_rows", "unit_positions"]

_KEEP = re.compile(r"[^0-9a-z']")
_SPECIAL = re.compile(r"^\s*<\|[^|]*\|>\s*$")  # Whisper's <|startoftranscript|>, <|en|>, <|0.00|> …


def _letters(text: str) -> str:
    return _KEEP.sub("", text.lower())


def unit_positions(texts: Sequence[str], units: Sequence[str], first: int = 0) -> list[list[int]]:
    """Return, per unit (a word, or words spoken as one: "on the"), the positions of `texts` (decoded
    tokens in order, from position `first` on) that spell it; tokens with no letters (punctuation)
    and special tokens (`<|…|>`) belong to no unit. Raises `ValueError` where the tokens do not spell the units."""
    out: list[list[int]] = [[] for _ in units]
    wanted = [_letters(u) for u in units]
    k, used = 0, 0  # the unit being spelled, and how many of its letters are spelled
    for pos in range(first, len(texts)):
        letters = "" if _SPECIAL.match(texts[pos]) else _letters(texts[pos])
        while letters:
            if k == len(units):
                raise ValueError(f"tokens spell more than the units {list(units)}: {texts[pos]!r} at {pos}")
            take = wanted[k][used : used + len(letters)]
            if not letters.startswith(take) or not take:
                raise ValueError(f"token {texts[pos]!r} at {pos} does not spell unit {units[k]!r}")
            out[k].append(pos)
            letters, used = letters[len(take) :], used + len(take)
            if used == len(wanted[k]):
                k, used = k + 1, 0
    if k != len(units):
        raise ValueError(f"tokens stop before the unit {units[k]!r}")
    return [sorted(set(p)) for p in out]


def predicting_rows(positions: Sequence[int]) -> list[int]:
    """The decoder rows that *predict* the tokens at `positions` (row `p - 1` outputs token `p`), the
    rows Whisper's own word timing reads; the rows *of* the tokens are `positions` themselves."""
    if any(p < 1 for p in positions):
        raise ValueError("position 0 (the start token) is predicted by no row")
    return [p - 1 for p in positions]


def alignment_hits(
    cross: np.ndarray, rows: Sequence[Sequence[int]], frames: Sequence[range], n_frames: int
) -> np.ndarray:
    """Per word, whether the strongest of the first `n_frames` frames in the mean of its `rows` of
    `cross` (`[targets, frames]`) lies in its `frames`."""
    if len(rows) != len(frames):
        raise ValueError(f"{len(rows)} row groups for {len(frames)} frame ranges")
    if not 0 < n_frames <= cross.shape[1]:
        raise ValueError(f"n_frames {n_frames} is outside the map's {cross.shape[1]} frames")
    hits = np.zeros(len(rows), bool)
    for w, (r, f) in enumerate(zip(rows, frames, strict=True)):
        if not len(r):
            raise ValueError(f"word {w} has no rows")
        strongest = int(np.argmax(cross[list(r), :n_frames].astype(np.float64).mean(axis=0)))
        hits[w] = strongest in f
    return hits


def chance_hits(frames: Sequence[range], n_frames: int) -> float:
    """The expected fraction of hits for a strongest frame drawn uniformly from the first `n_frames`."""
    return float(np.mean([len(range(f.start, min(f.stop, n_frames))) / n_frames for f in frames]))
