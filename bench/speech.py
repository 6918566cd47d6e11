"""Whisper on synthetic speech: a transcript, every site's maps, and cue alignment on cross-attention.

    python -m bench.speech                    # Whisper tiny.en, eight sentences, every decoder layer
    python -m bench.speech --model whisper-base
    python -m bench.speech --quick            # two sentences (the test suite runs it)
    python -m bench.speech --homophones       # cue shares on the homophone set (vzcore.evaluation.homophones)

Each sentence (our own, spoken by espeak-ng with known word times: `vzcore.speech`) is scored twice
with `vzcore.seq2seq.score_pairs`: once on the model's own greedy transcript at all three sites, the
encoder and cross sites with each word's frames zeroed at once (`source_spans`), to show the
transcript and the maps' shapes; then forced on the sentence's text at the cross site, one column
per encoder frame, for alignment: the fraction of words whose rows' strongest frame (among the
frames that hold audio) lies inside the word (`vzcore.evaluation.speech`), per method and decoder
layer, for the trained model and for a randomly initialised Whisper of the same shape (seeded), with
the chance level (each word's share of the audio's frames). Rows are those that predict the word's
tokens (Whisper's own word timing reads these). Not timed beyond wall seconds per call.

With `--homophones`: each sentence of the homophone set, forced on its text, at the cross site with
each spoken word's frames zeroed at once; the homophone's rows (mean) give the share of the map on the
cue word, and on the homophone itself, per method and decoder layer (mean and 95 % bootstrap interval
over the sentences), for the trained and the random model, against a uniform row's share
(1 / words); and whether the model's own greedy transcript spells the homophone as the sentence does.
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np

from vzcore.audio import audio_frames, frame_span, log_mel
from vzcore.evaluation.homophones import HOMOPHONES, unit_of
from vzcore.evaluation.metrics import bootstrap_ci, cue_share, random_share
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


def _homophones(models: dict, quick: bool) -> None:
    import torch

    from vzcore import seq2seq

    handle = models["trained"]
    items = HOMOPHONES[:4] if quick else HOMOPHONES
    shares: dict[tuple[str, str, int], list[tuple[float, float]]] = {}
    uniform, spelt = [], 0
    for item in items:
        speech = synthesise(item.sentence)
        frames = [frame_span(handle.config, a, b) for a, b in speech.times]
        with torch.no_grad():
            ids = handle.model.generate(log_mel(handle.config, speech.audio))
        transcript = handle.tokenizer.decode(ids[0], skip_special_tokens=True)
        words = re.findall(r"[a-z']+", transcript.lower())
        spelt += item.homophone in words and item.other not in words
        home, cue = unit_of(speech.words, item.homophone), unit_of(speech.words, item.cue)
        uniform.append(random_share(len(speech.words), 1))
        for name, model in models.items():
            forced = seq2seq.score_pairs(
                model, [speech.audio.samples], [item.sentence], methods=METHODS, sites=("cross",),
                source_spans=[frames], sampling_rate=speech.audio.rate,
            )[0]  # fmt: skip
            texts = [handle.tokenizer.decode([i]) for i in forced.target_ids]
            rows = predicting_rows(unit_positions(texts, speech.words)[home])
            cross = forced.sites["cross"]
            for method in METHODS:
                for layer, maps in zip(cross.layers, cross.scores[method], strict=True):
                    row = maps[rows].astype(np.float64).mean(0)
                    shares.setdefault((name, method, layer), []).append(
                        (float(cue_share(row, [cue])), float(cue_share(row, [home])))
                    )
        print(f"{item.sentence!r}: greedy {transcript.strip()!r}")
    print(f"\n# homophones: {len(items)} sentences; the greedy transcript spells the homophone right in {spelt}")
    print(f"uniform row's share of one word: {np.mean(uniform):.3f}")
    print("| model | method | decoder layer | cue share (95 % CI) | own-word share |")
    print("|---|---|---|---|---|")
    for (name, method, layer), found in shares.items():
        cue_values, own = [c for c, _ in found], [o for _, o in found]
        lo, hi = bootstrap_ci(cue_values)
        print(f"| {name} | {method} | {layer} | {np.mean(cue_values):.3f} ({lo:.3f}–{hi:.3f}) | {np.mean(own):.3f} |")


def main(argv: list[str] | None = None) -> None:
    from vzcore import seq2seq

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="whisper-tiny.en")
    p.add_argument("--quick", action="store_true", help="two sentences (four with --homophones)")
    p.add_argument("--homophones", action="store_true", help="cue shares on the homophone set instead")
    p.add_argument("--seed", type=int, default=0, help="the random-initialised baseline's seed")
    args = p.parse_args(argv)
    sentences = SENTENCES[:2] if args.quick else SENTENCES
    handle = seq2seq.load_seq2seq(loadable_path(args.model))
    models = {"trained": handle, "random init": _random_like(handle, args.seed)}
    if args.homophones:
        _homophones(models, args.quick)
        return
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
