"""Readable heatmaps for long sequences: figure size and tick labels, wrapped titles, fonts for any script."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

pytest.importorskip("matplotlib")

import matplotlib.pyplot as plt

import vzcore
from tests.harness.synthetic_store import write_scored_store
from vzcore.plot import result_figure
from vzcore.result import ScoreResult

DPI = 110  # what `vz explain` writes at


def _result(tokens: list[str], layers: int = 1, methods=("value_zeroing",)) -> ScoreResult:
    n = len(tokens)
    rng = np.random.default_rng(0)
    scores = {m: rng.random((layers, n, n)).astype(np.float32) for m in methods}
    return ScoreResult(
        tokens, list(range(n)), list(range(n)), list(range(layers)), scores, scored_rows=np.ones(n, bool)
    )


def _png_size(fig) -> tuple[int, int]:
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, dpi=DPI)
    buf.seek(0)
    with Image.open(buf) as im:
        return im.size


def _glyph_warnings(record) -> list:
    return [w for w in record if "missing from font" in str(w.message)]


# ---- heatmaps --------------------------------------------------------------------------------
def test_a_512_token_heatmap_is_capped_and_labels_every_kth_token():
    tokens = [f"Ġw{k}" for k in range(512)]
    fig = result_figure(_result(tokens))
    width, height = _png_size(fig)
    assert max(width, height) <= 20 * DPI  # today: 7,000 px
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert 32 <= len(ticks) <= 170, len(ticks)  # about one label per 0.12 in of axis
    step = 512 // len(ticks) + (512 % len(ticks) > 0)
    assert ticks == [f"w{k}" for k in range(0, 512, step)]
    assert "one label per" in fig.axes[0].get_xlabel()
    plt.close(fig)
    small = result_figure(_result([f"Ġw{k}" for k in range(8)], layers=2, methods=("a", "b")))
    assert [t.get_text() for t in small.axes[0].get_xticklabels()] == [f"w{k}" for k in range(8)]  # every label
    plt.close(small)


def test_a_grid_of_heatmaps_stays_within_the_cap():
    fig = result_figure(_result([f"t{k}" for k in range(128)], layers=6, methods=("a", "b", "c")))
    assert max(fig.get_size_inches()) <= 20
    plt.close(fig)


def test_titles_are_wrapped_not_cut(tiny_model_dir, tmp_path):
    from vzcore.queries import show_example

    text = " ".join(["Many teenagers were helping with the chairs"] * 6) + " at the end."  # 270 characters
    fig = result_figure(_result(["a", "b", "c"]), title=f"model: {text}")
    shown = fig.get_suptitle()
    assert "\n" in shown and " ".join(shown.split()) == f"model: {text}"
    plt.close(fig)
    path = tmp_path / "s.zarr"
    write_scored_store(path, vzcore.load_model(tiny_model_dir), [text], ["attention"])
    fig = show_example(vzcore.open_store(path), 0)  # `vz show`: today cut at 80 characters
    assert " ".join(fig.get_suptitle().split()) == f"example 0: {text}"
    plt.close(fig)


def test_vz_explain_passes_the_whole_text_as_title(tiny_model_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import vzcore.plot
    from jobs.cli import app

    titles = []
    real = vzcore.plot.result_figure

    def spy(*args, **kwargs):
        titles.append(kwargs.get("title"))
        return real(*args, **kwargs)

    monkeypatch.setattr(vzcore.plot, "result_figure", spy)
    text = "Kristen has fixed this chair, " * 4 + "and the table."
    out = CliRunner().invoke(app, ["explain", text, "--model", tiny_model_dir, "--out", str(tmp_path / "m.png")])
    assert out.exit_code == 0, out.output
    assert len(titles) == 1 and titles[0].endswith(f": {text}")  # today: cut at 80 characters


def test_drawing_changes_no_backend_and_no_pyplot_state(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend other than Agg, as a notebook's inline one is
    try:
        figures = plt.get_fignums()
        fig = result_figure(_result(["a", "b", "c"]), title="t")
        assert matplotlib.get_backend() == "svg"  # today: switched to Agg, and a notebook shows nothing
        assert plt.get_fignums() == figures  # a plain Figure: nothing for pyplot to show or leak
        fig.savefig(tmp_path / "m.png")  # saving still writes a PNG
        assert (tmp_path / "m.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        matplotlib.use(before)


def test_right_to_left_labels_are_stored_logically_and_drawn_right_to_left():
    from matplotlib import font_manager
    from matplotlib.textpath import TextToPath

    hebrew, arabic = "שלום", "مرحبا"
    fig = result_figure(_result([hebrew, arabic, "abc"]))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [hebrew, arabic, "abc"]  # never pre-shaped
    font = font_manager.get_font(font_manager.findfont(font_manager.FontProperties()))

    def glyphs(text: str) -> list[int]:  # the glyphs matplotlib draws, left to right ("DejaVuSans-533")
        return [int(g.rsplit("-", 1)[1], 16) for g, *_ in TextToPath().get_glyphs_with_font(font, text)[0]]

    def alone(text: str) -> list[int]:  # each character's own (isolated) glyph, in logical order
        return [font.get_char_index(ord(c)) for c in text]

    assert glyphs(hebrew) == alone(hebrew)[::-1]  # the last letter is drawn leftmost: read right to left
    assert glyphs("abc") == alone("abc")
    joined = glyphs(arabic)
    assert len(joined) == len(arabic) and set(joined).isdisjoint(alone(arabic))  # joined forms, not isolated


# ---- fonts -----------------------------------------------------------------------------------
def test_cjk_without_a_font_warns_once_and_not_per_glyph(monkeypatch):
    import vzcore.fonts

    monkeypatch.setattr(vzcore.fonts, "_installed_fonts", lambda: [])  # as on a machine without CJK fonts
    monkeypatch.setattr(vzcore.fonts, "_warned", False)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for text in ("日本語のテキスト", "中文文本和标签"):
            fig = result_figure(_result(list(text)), title=text)
            _png_size(fig)
            plt.close(fig)
    ours = [w for w in record if issubclass(w.category, vzcore.fonts.MissingGlyphsWarning)]
    assert len(ours) == 1 and "render as boxes" in str(ours[0].message)
    assert _glyph_warnings(record) == []  # today: one per glyph and draw


def test_an_installed_font_with_the_glyphs_is_picked():
    from vzcore.fonts import MissingGlyphsWarning, label_fonts

    # DejaVu Sans (the default) has no circled letters; STIXGeneral (shipped with matplotlib) has.
    assert label_fonts(["plain text"]) is None
    families = label_fonts(["Ⓐ Ⓑ"])
    assert families is not None and families[0] == "DejaVu Sans" and "STIXGeneral" in families
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        fig = result_figure(_result(["Ⓐ", "Ⓑ", "c"]), title="Ⓐ and Ⓑ")
        assert "STIXGeneral" in fig.axes[0].get_xticklabels()[0].get_fontfamily()
        _png_size(fig)
        plt.close(fig)
    assert _glyph_warnings(record) == [] and not [w for w in record if w.category is MissingGlyphsWarning]


def test_an_installed_cjk_font_is_picked():
    from matplotlib import font_manager

    from vzcore.fonts import label_fonts

    cjk = [f.name for f in font_manager.fontManager.ttflist if "CJK" in f.name or "Hei" in f.name]
    if not cjk:
        pytest.skip("no CJK font installed here (fc-list :lang=zh is empty)")
    families = label_fonts(["日本語"])
    assert families is not None and len(families) > 1


def test_an_audio_encoders_columns_are_named_frames():
    from dataclasses import replace

    from vzcore.maps import FRAMES, self_site

    text = _result(["a", "b", "c"])
    frames = replace(text, tokens=["0.01s", "0.03s", "0.05s"], word_ids=None, site=self_site(False, FRAMES))
    assert result_figure(text).axes[0].get_xlabel().startswith("source j (zeroed / attended token)")
    assert result_figure(frames).axes[0].get_xlabel().startswith("source j (zeroed / attended frame)")
