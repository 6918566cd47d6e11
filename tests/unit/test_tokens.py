"""Raw token pieces to display text (`vzcore.tokens`): byte-level BPE, SentencePiece, WordPiece."""

from __future__ import annotations

import pytest

from vzcore.statistics import is_punctuation
from vzcore.tokens import guess_scheme, sequence_texts, span_text, token_text, vocabulary_scheme

# Pieces exactly as SmolLM2's tokenizer writes them (tests/jobs/test_labels.py checks the real one).
CAFE = ["K", "rist", "en", "Ġhas", "Ġfixed", "Ġthe", "ĠcafÃ©", "."]
NIHONGO = ["æĹ", "¥", "æľ¬", "è", "ª", "ŀ", "ãģ®"]  # 日本語の: 日 and 語 split across pieces


def test_byte_level_pieces_decode_without_their_leading_space():
    assert guess_scheme(CAFE) == "byte_level"
    assert sequence_texts(CAFE) == ["K", "rist", "en", "has", "fixed", "the", "café", "."]
    assert token_text("ĠcafÃ©") == "café" and token_text("Ġhas") == "has"
    assert span_text(CAFE[:3]) == "Kristen"


def test_pieces_that_split_a_character_show_the_whole_character_in_a_sequence():
    assert sequence_texts(NIHONGO) == ["日", "日", "本", "語", "語", "語", "の"]
    assert span_text(NIHONGO) == "日本語の"
    # On its own (a token type), a partial piece shows what decodes and U+FFFD for the rest.
    assert token_text("æĹ", "byte_level") == "\ufffd" and token_text("æľ¬", "byte_level") == "本"
    cut = ["¥", "æľ¬", "Ġ", "è"]  # a sequence cut mid-character at both ends (truncation, id lists)
    assert sequence_texts(cut) == ["\ufffd", "本", "␣", "\ufffd"]


def test_whitespace_pieces_stay_visible():
    assert sequence_texts(["a", "Ċ", "b", "Ġ", "Ġc", "ĠðŁĻĤ", "ĠĠĠ"]) == ["a", "\\n", "b", "␣", "c", "🙂", "␣␣␣"]


def test_sentencepiece_and_wordpiece():
    pieces = ["<s>", "▁The", "▁caf", "é", "<0xE6>", "<0x97>", "<0xA5>"]
    assert guess_scheme(pieces) == "sentencepiece"
    assert sequence_texts(pieces) == ["<s>", "The", "caf", "é", "日", "日", "日"]
    pieces = ["[CLS]", "una", "##ffa", "##ble", "caf", "##é", "[SEP]"]
    assert guess_scheme(pieces) == "wordpiece"  # `##é` is not valid UTF-8 as bytes: not byte-level
    assert sequence_texts(pieces) == ["[CLS]", "una", "ffa", "ble", "caf", "é", "[SEP]"]
    assert span_text(pieces[1:4]) == "unaffable"
    assert token_text("é") == "é" and token_text("##é") == "é"  # a Latin-1 WordPiece piece stays as written


def test_labels_read_the_pieces_not_the_text_they_were_cut_from():
    from vzcore.result import ScoreResult

    # As MiniLM's uncased tokenizer cuts "Café" (lowercased, accent stripped), with its offsets.
    r = ScoreResult(
        tokens=["[CLS]", "cafe", "[SEP]"],
        token_ids=[101, 7668, 102],
        word_ids=[None, 0, None],
        layers=[0],
        scores={},
        text="Café",
        offsets=[(0, 0), (0, 4), (0, 0)],
    )
    assert r.labels == ["[CLS]", "cafe", "[SEP]"]  # as a store, which keeps no offsets, reads it back
    assert r.word_level().words == ["[CLS]", "cafe", "[SEP]"]


def test_vocabulary_scheme_and_punctuation_on_raw_pieces():
    assert vocabulary_scheme(["Ġthe", "æĹ", ".", "##", "Ġ,"]) == "byte_level"
    assert vocabulary_scheme(["the", "##s", "é", "."]) == "wordpiece"
    for piece in (".", "Ġ,", "##.", "▁!", "ĠâĢĶ", "Ċ."):  # ` —` is byte-level `ĠâĢĶ`
        assert is_punctuation(piece), piece
    for piece in ("Ġ", "Ċ", "##s", "Ġhas", "[SEP]", "Ã©"):
        assert not is_punctuation(piece), piece


@pytest.mark.parametrize("piece", ["<|im_start|>", "<｜begin▁of▁sentence｜>"])
def test_special_tokens_show_as_written(piece):
    assert sequence_texts([piece, "Ġhi"])[0] == piece


def test_a_piece_votes_as_guess_scheme_guesses_it_alone():
    """`vocabulary_scheme`'s per-piece vote (with its shortcut for ASCII pieces) is `guess_scheme` of the piece."""
    from vzcore.tokens import _piece_scheme

    pieces = ["the", "##s", "##", "<0x0A>", "<0xZZ>", "[CLS]", "<|im_start|>", "▁the", "Ġthe", "é", "Ã©", "æĹ", "", "."]
    for piece in pieces:
        assert _piece_scheme(piece) == guess_scheme([piece]), piece
