"""Benchmark value zeroing of audio encoders (wav2vec2, HuBERT): the fast path against the reference.

    python -m bench.audio_encoders --threads 1            # 2 s of audio (99 frames), hidden 256, 4 layers
    python -m bench.audio_encoders --seconds 4 --hidden 768 --layers 2 --runs 5
    python -m bench.audio_encoders --quick                # 0.5 s, hidden 64, 2 layers, 1 run (the test suite runs it)

For each family and block layout (post-norm: `do_stable_layer_norm=False`, as the base models; pre-norm:
`True`, as the large ones), a seeded model (`--layers` blocks, `--hidden` wide, 4 heads, feed-forward
4 × hidden, the real feature encoder's kernels and strides with 64 channels) scores one waveform of
`--seconds` seconds at 16 kHz: the fast path as users call it (`vzcore.score`: the feature encoder, the
clean pass, then every layer's pairs) against the reference (`reference_value_zeroing`: one block call
per frame, every layer). Prints seconds per waveform of both in CPU seconds of this process (medians over
interleaved runs: on a shared machine wall time mostly measures the other work), their ratio
(reference / fast) in CPU and in wall time, the largest difference of their maps, and the part of the
fast path's time that is the feature encoder and the clean pass (`score(methods=["attention"])`). Then the same for
span zeroing: one span per 0.3 s "word" against the reference zeroing those frames by hand.
"""

from __future__ import annotations

import argparse
import functools

import numpy as np
import torch
import transformers

import vzcore
from bench.seq2seq import _median_times
from vzcore.audio import conv_frames, frame_span
from vzcore.inputs import encode_audio
from vzcore.reference import reference_value_zeroing

__all__ = ["main"]

RATE = 16_000
KINDS = (
    ("wav2vec2", transformers.Wav2Vec2Config, False),
    ("wav2vec2", transformers.Wav2Vec2Config, True),
    ("hubert", transformers.HubertConfig, False),
    ("hubert", transformers.HubertConfig, True),
)


def build(cls, stable: bool, hidden: int, layers: int) -> vzcore.ModelHandle:
    """Return a seeded audio encoder of config class `cls` (4 heads, feed-forward 4 × hidden)."""
    torch.manual_seed(0)
    cfg = cls(
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        intermediate_size=4 * hidden,
        conv_dim=(64,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        do_stable_layer_norm=stable,
        feat_extract_norm="layer" if stable else "group",
    )
    model = transformers.AutoModel.from_config(cfg, attn_implementation="eager").eval()
    return vzcore.load_model(model)


def waveform(seconds: float) -> np.ndarray:
    """A seeded tone in noise, `seconds` long at 16 kHz."""
    g = np.random.default_rng(1)
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t) + 0.1 * g.standard_normal(t.size)).astype(np.float32)


def _score(handle: vzcore.ModelHandle, w: np.ndarray, spans: list[list[int]] | None) -> vzcore.ScoreResult:
    return vzcore.score(handle, [w], sampling_rate=RATE, spans=spans)[0]


def run(hidden: int, layers: int, seconds: float, runs: int) -> list[str]:
    rows = [
        "| family | blocks | columns | frames | reference s (cpu) | fast s (cpu) | of which clean pass | ratio (cpu) "
        "| ratio (wall) | max abs diff |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    w = waveform(seconds)
    for name, cls, stable in KINDS:
        handle = build(cls, stable, hidden, layers)
        values = encode_audio(handle, [w], RATE)[0].values.tolist()
        n = conv_frames(handle.config, len(w))
        words = [frame_span(handle.config, t, min(t + 0.3, n * 0.02)) for t in np.arange(0, n * 0.02 - 0.02, 0.3)]
        spans = [list(s) for s in words]
        # the feature encoder and the clean pass alone (raw attention costs nothing beside them)
        clean = functools.partial(vzcore.score, handle, [w], ["attention"], sampling_rate=RATE)
        for columns, span_arg in (("frames", None), (f"{len(spans)} spans", spans)):
            fast = functools.partial(_score, handle, w, span_arg)
            ref = functools.partial(reference_value_zeroing, handle, values, spans=span_arg)
            diff = float(np.abs(fast().scores["value_zeroing"] - ref()).max())
            (w_ref, t_ref), (w_fast, t_fast), (_, t_clean) = _median_times([ref, fast, clean], runs)
            layout = handle.family.shape.layout
            rows.append(
                f"| {name} | {layout} | {columns} | {n} | {t_ref:.3f} | {t_fast:.3f} | {t_clean:.3f} "
                f"| {t_ref / t_fast:.1f} | {w_ref / w_fast:.1f} | {diff:.1e} |"
            )
            print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seconds", type=float, default=2.0, help="audio length (2 s at 16 kHz: 99 frames)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument("--quick", action="store_true", help="0.5 s of audio, hidden 64, 2 layers, 1 run")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.hidden, args.layers, args.seconds, args.runs = 64, 2, 0.5, 1
    print(
        f"# audio encoder value zeroing, fast path vs reference: hidden {args.hidden}, {args.layers} layers, "
        f"{args.seconds:g} s of audio, {torch.get_num_threads()} threads, medians of {args.runs} interleaved runs"
    )
    rows = run(args.hidden, args.layers, args.seconds, args.runs)
    print("\n".join(["", *rows]))


if __name__ == "__main__":
    main()
