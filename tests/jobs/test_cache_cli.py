"""`vz cache list | clear` on a cache folder of the test's own."""

from __future__ import annotations

from typer.testing import CliRunner

from jobs.cli import app
from tests.harness.models import tiny_model
from vzcore import checkpoints

runner = CliRunner()


def test_cache_lists_then_clears(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoints.CACHE_ENV, str(tmp_path / "cache"))
    gguf = tmp_path / "SmolThing.Q4.gguf"
    gguf.write_bytes(b"GGUF not really")
    folder = checkpoints.dequantised(gguf, lambda: (tiny_model("llama"), None))
    out = runner.invoke(app, ["cache", "list"])
    assert out.exit_code == 0, out.output
    assert "1 entries" in out.stdout and f"models/{folder.name}  (from SmolThing.Q4.gguf)" in out.stdout
    out = runner.invoke(app, ["cache", "clear"])
    assert out.exit_code == 0 and "freed" in out.stdout and not folder.exists()
    assert "0 entries" in runner.invoke(app, ["cache", "list"]).stdout
