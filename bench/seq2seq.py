"""Benchmark encoder–decoder value zeroing per family and site: the fast path against the reference.

    python -m bench.seq2seq                      # hidden 256, 32 source tokens, 24 decoder tokens, 250 audio positions
    python -m bench.seq2seq --src 64 --tgt 48 --positions 500 --runs 5
    python -m bench.seq2seq --quick              # a small run of every family and site (the test suite runs it)

For every encoder–decoder family, a seeded model of its first model type (2 layers per stack,
`--hidden` wide, 4 heads, feed-forward 4 × hidden) scores one pair at each site: the fast path as
users call it (`score_pairs(sites=[site])`: the clean pass, then every layer's pairs) against the
reference (`reference_site_zeroing`: one block call per source, all layers). Prints seconds per
pair of both in CPU seconds of this process (medians over interleaved runs: on a shared machine
wall time mostly measures the other work), their ratio (reference / fast) in CPU and in wall time,
and the largest difference of their maps. `--threads` sets torch's threads (default: torch's; on
a loaded machine 1 avoids threads spinning against other work). Whisper's encoder positions are
audio frames after its stride-2 front end.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import transformers

from vzcore import seq2seq
from vzcore.families.encdec import SITE_NAMES, encdec_family_for, encdec_specs
from vzcore.reference import reference_site_zeroing

__all__ = ["main"]


def build(model_type: str, hidden: int, positions: int) -> torch.nn.Module:
    """Return a seeded `*ForConditionalGeneration` model of `model_type` (2 layers per stack, 4 heads)."""
    torch.manual_seed(0)
    heads, ffn, vocab = 4, 4 * hidden, 1000
    if model_type in ("t5", "mt5"):
        cls = transformers.T5Config if model_type == "t5" else transformers.MT5Config
        cfg = cls(
            vocab_size=vocab,
            d_model=hidden,
            d_kv=hidden // heads,
            d_ff=ffn,
            num_layers=2,
            num_heads=heads,
            decoder_start_token_id=0,
            pad_token_id=0,
            eos_token_id=1,
        )
    elif model_type == "whisper":
        cfg = transformers.WhisperConfig(
            vocab_size=vocab,
            num_mel_bins=80,
            d_model=hidden,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=heads,
            decoder_attention_heads=heads,
            encoder_ffn_dim=ffn,
            decoder_ffn_dim=ffn,
            max_source_positions=positions,
            max_target_positions=128,
            decoder_start_token_id=0,
            pad_token_id=1,
            eos_token_id=2,
            bos_token_id=0,
        )
    else:
        cls = {"bart": transformers.BartConfig, "mbart": transformers.MBartConfig}[model_type]
        cfg = cls(
            vocab_size=vocab,
            d_model=hidden,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=heads,
            decoder_attention_heads=heads,
            encoder_ffn_dim=ffn,
            decoder_ffn_dim=ffn,
            max_position_embeddings=256,
            decoder_start_token_id=2,
        )
    auto = transformers.AutoModelForSpeechSeq2Seq if model_type == "whisper" else transformers.AutoModelForSeq2SeqLM
    return auto.from_config(cfg, attn_implementation="eager").eval()


def pair(model: torch.nn.Module, src: int, tgt: int) -> tuple[dict[str, torch.Tensor], object, list[int]]:
    """Return model inputs, the source as `score_pairs` takes it, and the target (decoder ids after the start)."""
    g = torch.Generator().manual_seed(1)
    cfg = model.config
    target = torch.randint(3, 1000, (tgt - 1,), generator=g).tolist()
    dec = torch.tensor([[cfg.decoder_start_token_id, *target]])
    if cfg.model_type == "whisper":
        feats = torch.randn(1, cfg.num_mel_bins, 2 * cfg.max_source_positions, generator=g)
        return {"input_features": feats, "decoder_input_ids": dec}, feats[0].numpy(), target
    ids = torch.randint(3, 1000, (1, src), generator=g)
    return {"input_ids": ids, "decoder_input_ids": dec}, ids[0].tolist(), target


def _median_times(fns: list[Callable[[], object]], runs: int) -> list[tuple[float, float]]:
    """Return `(wall, cpu)` seconds of each of `fns`, medians over interleaved runs. The CPU seconds (this
    process's, all threads) are what to compare on a machine shared with other work: wall time there
    mostly measures the other work."""
    times: list[list[tuple[float, float]]] = [[] for _ in fns]
    for _ in range(runs):  # interleaved: both see the same machine load
        for k, fn in enumerate(fns):
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            times[k].append((time.perf_counter() - wall, time.process_time() - cpu))
    return [(statistics.median(w for w, _ in t), statistics.median(c for _, c in t)) for t in times]


def run(hidden: int, src: int, tgt: int, positions: int, runs: int) -> list[str]:
    rows = [
        "| family | site | targets × sources | reference s (cpu) | fast s (cpu) | ratio (cpu) | ratio (wall) "
        "| max abs diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spec in encdec_specs():
        model = build(spec.model_types[0], hidden, positions)
        inputs, source, target = pair(model, src, tgt)
        for site in SITE_NAMES:
            spec_of = encdec_family_for(model.config)
            fast = functools.partial(
                lambda m, s, t, site: seq2seq.score_pairs(m, [s], [t], sites=[site])[0], model, source, target, site
            )
            ref = functools.partial(reference_site_zeroing, model, spec_of, inputs, site)
            got, want = fast().sites[site].scores["value_zeroing"], ref()
            (w_ref, t_ref), (w_fast, t_fast) = _median_times([ref, fast], runs)
            shape = f"{got.shape[1]} × {got.shape[2]}"
            diff = float(np.abs(got - want).max())
            rows.append(
                f"| {spec.name} | {site} | {shape} | {t_ref:.3f} | {t_fast:.3f} | {t_ref / t_fast:.1f} "
                f"| {w_ref / w_fast:.1f} | {diff:.1e} |"
            )
            print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--src", type=int, default=32, help="source tokens (text models)")
    p.add_argument("--tgt", type=int, default=24, help="decoder tokens")
    p.add_argument("--positions", type=int, default=250, help="Whisper's encoder positions (audio frames / 2)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    p.add_argument(
        "--quick", action="store_true", help="hidden 64, 12 source and 8 decoder tokens, 16 positions, 1 run"
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.hidden, args.src, args.tgt, args.positions, args.runs = 64, 12, 8, 16, 1
    print(
        f"# encoder-decoder value zeroing, fast path vs reference: hidden {args.hidden}, {args.src} source tokens, "
        f"{args.tgt} decoder tokens, {args.positions} Whisper positions, {torch.get_num_threads()} threads, "
        f"medians of {args.runs} interleaved runs"
    )
    rows = run(args.hidden, args.src, args.tgt, args.positions, args.runs)
    print("\n".join(["", *rows]))


if __name__ == "__main__":
    main()
