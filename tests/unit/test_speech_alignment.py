"""Cue alignment on speech (vzcore.evaluation.speech), against hand-worked cases."""

from __future__ import annotations

import numpy as np
import pytest

from vzcore.evaluation.speech import alignment_hits, chance_hits, predicting_rows, unit_positions


def test_tokens_are_grouped_into_the_units_they_spell():
    texts = ["<|startoftranscript|>", "<|notimestamps|>", " The", " keys", " to", " the", " cab", "inet", " on",
             " the", " table", ".", "<|endoftext|>"]  # fmt: skip
    units = ["The", "keys", "to", "the", "cabinet", "on the", "table"]
    assert unit_positions(texts, units) == [[2], [3], [4], [5], [6, 7], [8, 9], [10]]
    assert unit_positions([" It's", " A", "-", "OK"], ["it's", "a-ok"]) == [[0], [1, 3]]
    with pytest.raises(ValueError, match="does not spell"):
        unit_positions([" The", " cat"], ["The", "dog"])
    with pytest.raises(ValueError, match="stop before"):
        unit_positions([" The"], ["The", "dog"])
    with pytest.raises(ValueError, match="more than"):
        unit_positions([" The", " dog"], ["The"])


def test_hits_take_the_strongest_frame_of_the_rows_mean_among_the_audio_frames():
    cross = np.zeros((4, 10))
    cross[1, 2] = 1.0  # word 0's row points at frame 2 (inside 1..3)
    cross[2, 7], cross[3, 5], cross[3, 6] = 0.9, 0.3, 0.3  # word 1's rows: mean strongest at 7 (outside 4..6)
    cross[0, 9] = 5.0  # beyond n_frames: never counted
    hits = alignment_hits(cross, [[1], [2, 3]], [range(1, 3), range(4, 7)], n_frames=8)
    assert hits.tolist() == [True, False]
    cross[3, 5] = 2.0  # now the mean of rows 2 and 3 is strongest at frame 5
    assert alignment_hits(cross, [[1], [2, 3]], [range(1, 3), range(4, 7)], n_frames=8).tolist() == [True, True]
    with pytest.raises(ValueError):
        alignment_hits(cross, [[1]], [range(1, 3), range(4, 7)], n_frames=8)


def test_chance_is_each_words_share_of_the_frames():
    assert chance_hits([range(0, 2), range(2, 10)], 10) == pytest.approx((0.2 + 0.8) / 2)
    assert chance_hits([range(8, 12)], 10) == pytest.approx(0.2)  # frames past the audio do not count
    assert predicting_rows([3, 4]) == [2, 3]
    with pytest.raises(ValueError):
        predicting_rows([0])


def test_the_homophone_set_is_balanced_and_each_word_is_found_once():
    from vzcore.evaluation.homophones import HOMOPHONES, unit_of

    spellings = {item.homophone for item in HOMOPHONES}
    assert len(HOMOPHONES) == 16 and all(item.other in spellings for item in HOMOPHONES)  # both spellings
    for item in HOMOPHONES:
        words = item.sentence.rstrip(".").split()
        assert unit_of(words, item.homophone) != unit_of(words, item.cue)
    assert unit_of(("a", "sun", "in the", "sky"), "the") == 2
    with pytest.raises(ValueError, match="in 0 of the units"):
        unit_of(("a", "sun"), "moon")
