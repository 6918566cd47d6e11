"""The new methods through `vz explain` (gradient methods with `--target`) on the real MiniLM."""

from __future__ import annotations

from typer.testing import CliRunner

from jobs.cli import app

runner = CliRunner()


def test_explain_scores_new_methods_on_a_target(tmp_path, minilm):
    png = tmp_path / "map.png"
    args = ["explain", "Kristen [MASK] fixed this chair.", "--layer", "-1", "--out", str(png)]
    for method in ("alti", "globenc", "grad_x_input"):
        args += ["--method", method]
    out = runner.invoke(app, [*args, "--target", "2"])
    assert out.exit_code == 0, out.output
    for method in ("alti", "globenc", "grad_x_input"):
        assert f"{method}, layer 5" in out.stdout
    assert "[MASK] <- " in out.stdout and png.stat().st_size > 10_000
    refused = runner.invoke(app, [*args])
    assert refused.exit_code == 2 and "pass --target POS" in refused.output and "Traceback" not in refused.output
