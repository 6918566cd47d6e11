"""The `vz` command line: explain, methods, families."""

from __future__ import annotations

from typer.testing import CliRunner

from vzcore.cli import app

runner = CliRunner()


def test_methods_and_families_are_listed():
    out = runner.invoke(app, ["methods"])
    assert out.exit_code == 0 and "value_zeroing_rollout" in out.stdout
    out = runner.invoke(app, ["families"])
    assert out.exit_code == 0 and "qwen2" in out.stdout


def test_explain_prints_sources_and_writes_a_heatmap(tmp_path, minilm):
    png = tmp_path / "map.png"
    out = runner.invoke(
        app,
        [
            "explain",
            "Kristen [MASK] fixed this chair.",
            "--model",
            "minilm",
            "--layer",
            "-1",
            "--layer",
            "5",
            "--words",
            "--out",
            str(png),
        ],
    )
    assert out.exit_code == 0, out.output
    assert out.stdout.count("value_zeroing, layer 5") == 1
    assert "[MASK] <- " in out.stdout and "Kristen" in out.stdout
    assert png.stat().st_size > 10_000


def test_explain_unknown_method_fails_clearly(minilm):
    out = runner.invoke(app, ["explain", "hello", "--method", "rollout"])
    assert out.exit_code != 0
    assert "choose from" in str(out.exception)
