"""The `vz` command line: explain, methods, families."""

from __future__ import annotations

from typer.testing import CliRunner

from jobs.cli import app

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
    assert "[MASK] <- " in out.stdout and "kristen" in out.stdout  # labels are the (uncased) tokenizer's pieces
    assert png.stat().st_size > 10_000


def test_explain_bad_arguments_exit_2_with_the_choices_before_loading(monkeypatch):
    import vzcore

    def no_load(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(vzcore, "load_model", no_load)
    out = runner.invoke(app, ["explain", "hello", "--method", "rollout"])
    assert out.exit_code == 2, out.output
    assert "unknown method 'rollout'; choose from:" in out.output and "value_zeroing" in out.output
    out = runner.invoke(app, ["explain", "hello", "--layer", "99"])
    assert out.exit_code == 2 and "layer 99 out of range: the model has 6 layers" in out.output


def test_score_help_says_where_parts_run_by_default():
    out = runner.invoke(app, ["score", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb"})
    text = " ".join(out.stdout.split())
    assert out.exit_code == 0
    assert "On CPUs: one single-threaded actor per core, no more copies of the model than the memory holds" in text
    assert "On GPUs: one actor, which writes a part while it scores the next" in text
