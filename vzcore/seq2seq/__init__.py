"""Encoder–decoders (T5, BART / mBART / Marian, Whisper): value zeroing and attention at the encoder's
self-attention, the decoder's self-attention and the cross-attention, with spans (docs/encoder-decoders.md)."""

from __future__ import annotations

from vzcore.seq2seq.handle import Seq2SeqHandle, load_seq2seq
from vzcore.seq2seq.inputs import input_features, time_span
from vzcore.seq2seq.scoring import SEQ2SEQ_METHODS, score_pairs

__all__ = ["SEQ2SEQ_METHODS", "Seq2SeqHandle", "input_features", "load_seq2seq", "score_pairs", "time_span"]
