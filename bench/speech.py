"""Whisper on synthetic speech: a transcript, every site's maps, and cue alignment on cross-attention.

    python -m bench.speech                    # Whisper tiny.en, eight sentences, every decoder layer
    python -m bench.speech --model whisper-base
    python -m bench.speech --quick            # two sentences (the test suite runs it)

Each sentence (our own, spoken by espeak-ng with known word times: `vzcore.speech`) is scored twice
with `vzcore.seq2seq.score_pairs`: once on the model's own greedy transcript at all three sites, the
encoder and cross sites with each word's frames zeroed at once (`source_spans`), to show the
transcript and the maps' shapes; then forced on the sentence's text at the cross site, one column
per encoder frame, for alignment: the fraction of words whose rows' strongest frame (among the
frames that hold audio) lies inside the word (`vzcore.evaluation.speech`), per method and decoder
layer, for the trained model and for a randomly initialised Whisper of the same shape (seeded), with
the chance level (each word's share of the audio's frames). Rows are those that predict the word's
tokens (Whisper's own word timing reads these). Not timed beyond wall seconds per call.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vzcore.audio import audio_frames, frame_span
from vzcore.evaluation.speech import alignment_hits, chance_hits, predicting_rows, unit_positions
from vzcore.loading import loadable_path
from vzcore.speech import synthesise

__all__ = ["SENTENCES", "main"]

# Our own sentences; short function words and content words, no names.
SENTENCES = [
    "The keys to the cabinet are on the table.",
    "Many teenagers were helping their parents.",
    "We walked to the station in the rain.",
    "My brother plays the piano every evening.",
    "The author of the books is very famous.",
    "She said that he left.",
    "The old man sold his boat last summer.",
    "Two small dogs ran across the green field.",
]
METHODS = ("value_zeroing", "attention")


def _random_like(handle, seed: int):
    import torch
    from transformers import WhisperForConditionalGeneration

    from vzcore import seq2seq

    torch.manual_seed(seed)
    module = WhisperForConditionalGeneration(handle.config).eval()
    return seq2seq.load_seq2seq(module, tokenizer=handle.tokenizer, feature_extractor=handle.feature_extractor)


def main(argv: list[str] | None = None) -> None:
    from vzcore import seq2seq

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="whisper-tiny.en")
    p.add_argument("--quick", action="store_true", help="two sentences")
    p.add_argument("--seed", type=int, default=0, help="the random-initialised baseline's seed")
    args = p.parse_args(argv)
    sentences = SENTENCES[:2] if args.quick else SENTENCES
    handle = seq2seq.load_seq2seq(loadable_path(args.model))
    models = {"trained": handle, "random init": _random_like(handle, args.seed)}
    config, tok = handle.config, handle.tokenizer
    hits: dict[tuple[str, str, int], list[bool]] = {}
    chance: list[float] = []
    for sentence in sentences:
        speech = synthesise(sentence)
        samples, n_frames = speech.audio.samples, audio_frames(config, speech.audio)
        frames = [frame_span(config, a, b) for a, b in speech.times]
        t = time.perf_counter()
        greedy = seq2seq.score_pairs(
            handle, [samples], None, methods=METHODS, source_spans=[frames], sampling_rate=speech.audio.rate
        )[0]
        shapes = {s: greedy.sites[s].scores["value_zeroing"].shape for s in greedy.sites}
        print(f"{sentence!r}: transcript {tok.decode(greedy.target_ids, skip_special_tokens=True).strip()!r}")
        print(f"  maps (word spans as sources) {shapes}, {time.perf_counter() - t:.1f} s")
        chance.append(chance_hits(frames, n_frames))
        for name, model in models.items():
            t = time.perf_counter()
            forced = seq2seq.score_pairs(
                model, [samples], [sentence], methods=METHODS, sites=("cross",), sampling_rate=speech.audio.rate
            )[0]
            texts = [tok.decode([i]) for i in forced.target_ids]
            rows = [predicting_rows(pos) for pos in unit_positions(texts, speech.words)]
            cross = forced.sites["cross"]
            for method in METHODS:
                for layer, maps in zip(cross.layers, cross.scores[method], strict=True):
                    found = alignment_hits(maps, rows, frames, n_frames)
                    hits.setdefault((name, method, layer), []).extend(found.tolist())
            print(f"  {name}: cross map {cross.scores['value_zeroing'].shape}, {time.perf_counter() - t:.1f} s")
    words = len(next(iter(hits.values())))
    print(f"\n# cue alignment: {args.model}, {len(sentences)} sentences, {words} words (espeak-ng units)")
    print(f"chance (each word's share of the audio's frames): {np.mean(chance):.3f}")
    print("| model | method | decoder layer | words whose strongest frame is inside the word | fraction |")
    print("|---|---|---|---|---|")
    for (name, method, layer), found in hits.items():
        print(f"| {name} | {method} | {layer} | {sum(found)} / {len(found)} | {np.mean(found):.3f} |")


if __name__ == "__main__":
    main()
