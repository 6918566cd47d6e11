"""Token labels on real tokenizers: what `vz explain`, `vz show`, heatmaps and the token tables show.

SmolLM2's tokenizer is byte-level BPE (`Ġhas`, `ĠcafÃ©`); MiniLM's is WordPiece (`##ing`). The
models are tiny seeded ones saved with the real tokenizers (`tests/conftest.py`).
"""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")
pd = pytest.importorskip("pandas")

from typer.testing import CliRunner  # noqa: E402

import vzcore  # noqa: E402
from jobs.cli import app  # noqa: E402
from tests.harness.synthetic_store import write_scored_store  # noqa: E402
from vzcore.plot import result_figure  # noqa: E402
from vzcore.store.tables import TOKEN_COLUMNS  # noqa: E402
from vzcore.tokens import decode_piece  # noqa: E402

CAFE = "Kristen has fixed the café."
CAFE_LABELS = ["K", "rist", "en", "has", "fixed", "the", "café", "."]
CAFE_WORDS = ["Kristen", "has", "fixed", "the", "café", "."]


def _tick_labels(fig) -> list[str]:
    ax = fig.axes[0]
    return [t.get_text() for t in ax.get_xticklabels()]


def test_every_smollm2_piece_decodes_as_its_tokenizer_does(smollm2_tokenizer):
    tok = smollm2_tokenizer
    special = set(tok.all_special_ids)
    pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
    checked = 0
    for i, piece in enumerate(pieces):
        want = tok.decode([i])
        if i in special or "\ufffd" in want:  # partial characters: see tests/unit/test_tokens.py
            continue
        assert decode_piece(piece, "byte_level") == want, (i, piece)
        checked += 1
    assert checked > 45_000


def test_byte_level_labels_in_results_words_and_heatmaps(tiny_smollm2_dir):
    handle = vzcore.load_model(tiny_smollm2_dir)
    r = vzcore.score(handle, [CAFE, "日本語のテキスト"], layers=[-1])
    assert r[0].tokens[3] == "Ġhas" and r[0].tokens[6] == "ĠcafÃ©"  # raw pieces are kept
    assert r[0].labels == CAFE_LABELS
    assert r[0].word_level().words == CAFE_WORDS
    assert r[1].labels[:3] == ["日", "日", "本"]  # 日 is split across two pieces
    assert _tick_labels(result_figure(r[0])) == CAFE_LABELS
    assert _tick_labels(result_figure(r[0], words=True)) == CAFE_WORDS


def test_vz_explain_prints_decoded_tokens(tiny_smollm2_dir, tmp_path):
    out = CliRunner().invoke(
        app, ["explain", CAFE, "--model", tiny_smollm2_dir, "--layer", "-1", "--out", str(tmp_path / "m.png")]
    )
    assert out.exit_code == 0, out.output
    assert "Ġ" not in out.stdout and "Ã" not in out.stdout
    lines = out.stdout.splitlines()
    assert any(line.strip().startswith("café <- ") for line in lines), out.stdout
    out = CliRunner().invoke(
        app, ["explain", CAFE, "--model", tiny_smollm2_dir, "--words", "--layer", "0", "--out", str(tmp_path / "w.png")]
    )
    assert out.exit_code == 0 and any(line.strip().startswith("Kristen <- ") for line in out.stdout.splitlines())


def test_store_tables_and_vz_show_read_decoded_tokens(tiny_smollm2_dir, tmp_path):
    from vzcore.queries import show_example

    handle = vzcore.load_model(tiny_smollm2_dir)
    path = tmp_path / "s.zarr"
    write_scored_store(path, handle, [CAFE, "Zoë said: no."], ["attention"], part_size=1)
    tok = pd.read_parquet(path / "tables" / "tokens")
    first = tok[tok.example_id == 0]
    assert first.token.tolist()[6] == "ĠcafÃ©" and first.text.tolist() == CAFE_LABELS
    store = vzcore.open_store(path)
    result = store.example(0)  # read back: no offsets, so the pieces' bytes are decoded
    assert result.labels == CAFE_LABELS and result.word_level().words == CAFE_WORDS
    assert _tick_labels(show_example(store, 0)) == CAFE_LABELS
    assert _tick_labels(show_example(store, 1, words=True))[:2] == ["Zoë", "said"]
    assert list(store.part_reader(0).tokens_frame().columns) == list(TOKEN_COLUMNS)


def test_aggregate_token_types_keep_the_piece_and_add_its_text(tiny_smollm2_dir, tmp_path):
    from jobs.aggregate import AggregateConfig, aggregate

    handle = vzcore.load_model(tiny_smollm2_dir)
    path = tmp_path / "s.zarr"
    write_scored_store(path, handle, [CAFE, "He has — again."], ["attention"], part_size=2)
    aggregate(str(path), tmp_path / "agg", config=AggregateConfig(plots=False), log=lambda *a: None)
    types = pd.read_parquet(tmp_path / "agg" / "token_types.parquet")
    row = types[types.token == "ĠcafÃ©"].iloc[0]
    assert row.text == "café"
    assert set(types[types.token == "Ġhas"].text) == {"has"}


def test_wordpiece_labels_drop_the_continuation_marker(tiny_model_dir, tmp_path):
    handle = vzcore.load_model(tiny_model_dir)  # MiniLM's real WordPiece tokenizer
    r = vzcore.score(handle, ["The unaffable chairs."], layers=[0])[0]
    assert any(t.startswith("##") for t in r.tokens)
    assert not any("##" in x for x in r.labels) and r.labels[0] == "[CLS]"
    assert "unaffable" in r.word_level().words
    path = tmp_path / "s.zarr"
    write_scored_store(path, handle, ["The unaffable chairs."], ["attention"])
    back = vzcore.open_store(path).example(0)  # no offsets: the pieces decode alone
    assert back.labels == r.labels
    assert "unaffable" in back.word_level().words


def test_vz_explain_and_vz_show_label_alike(tiny_model_dir, tmp_path):
    from vzcore.queries import show_example

    text = "Kristen fixed the Café."  # MiniLM's uncased tokenizer lowercases and strips the accent
    out = CliRunner().invoke(
        app, ["explain", text, "--model", tiny_model_dir, "--layer", "-1", "--out", str(tmp_path / "m.png")]
    )
    assert out.exit_code == 0, out.output
    explained = [line.split(" <- ")[0].strip() for line in out.stdout.splitlines() if line.startswith("  ")]
    path = tmp_path / "s.zarr"
    write_scored_store(path, vzcore.load_model(tiny_model_dir), [text], ["value_zeroing"])
    shown = _tick_labels(show_example(vzcore.open_store(path), 0))
    assert explained == shown and "cafe" in shown  # today: "café" in one, "cafe" in the other
