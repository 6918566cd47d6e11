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
    gemma2 = replace(
        LLAMA,
        name="gemma2",
        model_types=("gemma2",),
        shape=BlockShape(
            before_attn=Norm("input_layernorm", NormKind.RMS_NORM_OFFSET),
            on_attn_out=Norm("post_attention_layernorm", NormKind.RMS_NORM_OFFSET),
            before_ffn=Norm("pre_feedforward_layernorm", NormKind.RMS_NORM_OFFSET),
        ),
    )
    monkeypatch.setattr(families, "_FAMILIES", (*families.family_specs(), gemma2))
    out = runner.invoke(app, ["families"])
    assert out.exit_code == 0, out.output
    got = _family_lines(out.stdout)
    assert got["albert"][0] == "albert (post-norm fast path): albert"
    assert got["distilbert"][0] == "distilbert (post-norm fast path): distilbert"
    assert got["deberta-v2"][0] == "deberta-v2 (post-norm fast path): deberta-v2"
    assert "globenc" in got["albert"][1] and len(got["albert"]) == 2  # every method applies
    assert got["llama"][0] == "llama (pre-norm fast path): llama, mistral, qwen2"
    assert got["llama"][2] == "not: attention_norm_res_ln, globenc, globenc_rollout"
    assert got["gemma2"][0].startswith(
        "gemma2 (no fast path: a norm on the attention output (post_attention_layernorm)"
    )
    assert (
        got["gemma2"][1] == "methods: attention, attention_norm, attention_rollout, grad_x_input, integrated_gradients"
    )
