"""`vz families`: per family, its model types, the fast path its blocks take and the methods that apply."""

from __future__ import annotations

from dataclasses import replace

from typer.testing import CliRunner

from jobs.cli import app
from vzcore import families
from vzcore.families import LLAMA, BlockShape, Norm, NormKind

runner = CliRunner()


def _family_lines(output: str) -> dict[str, list[str]]:
    blocks: dict[str, list[str]] = {}
    for line in output.splitlines():
        if not line.startswith(" "):
            blocks[line.split(" ")[0]] = [line]
        else:
            blocks[list(blocks)[-1]].append(line.strip())
    return blocks


def test_families_name_their_fast_path_and_methods(monkeypatch):
    # a parallel block with a norm on its attention output: a shape no layout covers
    odd = replace(
        LLAMA,
        name="odd",
        model_types=("odd",),
        shape=BlockShape(
            before_attn=Norm("input_layernorm", NormKind.RMS_NORM_OFFSET),
            on_attn_out=Norm("post_attention_layernorm", NormKind.RMS_NORM_OFFSET),
            parallel=True,
        ),
    )
    monkeypatch.setattr(families, "_FAMILIES", (*families.family_specs(), odd))
    out = runner.invoke(app, ["families"])
    assert out.exit_code == 0, out.output
    got = _family_lines(out.stdout)
    assert got["albert"][0] == "albert (post-norm blocks, factored fast path): albert"
    assert got["distilbert"][0] == "distilbert (post-norm blocks, factored fast path): distilbert"
    assert got["deberta-v2"][0] == "deberta-v2 (post-norm blocks, factored fast path): deberta-v2"
    assert "globenc" in got["albert"][1] and len(got["albert"]) == 2  # every method applies
    assert got["llama"][0] == "llama (pre-norm blocks, factored fast path): llama, mistral, qwen2, qwen3"
    assert got["llama"][2] == "not: attention_norm_res_ln, globenc, globenc_rollout"
    assert got["gemma2"][0] == "gemma2 (sandwich blocks, generic fast path): gemma2"
    assert got["moe"][0] == "moe (pre-norm blocks, generic fast path): mixtral, qwen2_moe, qwen3_moe"
    assert got["gpt_neox"][0] == "gpt_neox (parallel blocks, parallel fast path): gpt_neox"
    assert (
        got["gpt_neox"][2]
        == "not: alti, alti_rollout, attention_norm_res, attention_norm_res_ln, globenc, globenc_rollout"
    )
    assert got["odd"][0].startswith("odd (no fast path: attention and feed-forward running in parallel; a norm on")
    assert got["odd"][1] == (
        "methods: attention, attention_norm, attention_rollout, grad_x_input, integrated_gradients"
    )


def test_encoder_decoder_families_name_each_sites_path():
    out = runner.invoke(app, ["families"])
    assert out.exit_code == 0, out.output
    got = _family_lines(out.stdout)
    paths = "encoder factored, decoder generic, cross factored"
    assert got["t5"][0] == f"t5 (encoder-decoder; fast paths: {paths}): t5, mt5"
    assert got["whisper"][0] == f"whisper (encoder-decoder; fast paths: {paths}): whisper"
    assert got["bart"][1] == "methods: value_zeroing, attention (vzcore.seq2seq.score_pairs)"
    assert "alti" in got["bart"][2] and "value_zeroing," not in got["bart"][2]


def test_audio_encoders_are_listed_with_the_methods_they_refuse():
    out = runner.invoke(app, ["families"])
    assert out.exit_code == 0, out.output
    got = _family_lines(out.stdout)
    assert got["wav2vec2"][0] == "wav2vec2 (post-norm blocks, factored fast path): wav2vec2"
    assert got["hubert"][0] == "hubert (post-norm blocks, factored fast path): hubert"
    assert "globenc" in got["hubert"][1] and "value_zeroing" in got["hubert"][1]
    assert got["wav2vec2"][2] == "not: grad_x_input, integrated_gradients"
    # `do_stable_layer_norm=True`: pre-norm blocks, which the +LN decompositions do not cover
    assert got["wav2vec2-stable"][0] == "wav2vec2-stable (pre-norm blocks, factored fast path): wav2vec2"
    assert got["hubert-stable"][0] == "hubert-stable (pre-norm blocks, factored fast path): hubert"
    assert got["hubert-stable"][2] == (
        "not: attention_norm_res_ln, globenc, globenc_rollout, grad_x_input, integrated_gradients"
    )


def test_text_commands_refuse_an_audio_encoder_in_one_line(tmp_path):
    from tests.harness.models import tiny_audio_model

    tiny_audio_model("hubert").save_pretrained(tmp_path)
    out = runner.invoke(app, ["explain", "Hello there.", "--model", str(tmp_path)])
    assert out.exit_code == 2, out.output
    assert "is a hubert audio encoder: it scores audio, not text" in out.output
