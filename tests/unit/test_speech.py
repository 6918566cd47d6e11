"""Synthetic speech with word times (vzcore.speech), through the espeak-ng library in this process."""

from __future__ import annotations

import numpy as np
import pytest

from vzcore.speech import SpeechError, espeak_available, synthesise

pytestmark = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)")

SENTENCE = "The keys to the cabinet are on the table."


def test_words_come_back_in_order_with_spans_that_hold_the_speech():
    speech = synthesise(SENTENCE, rate=16000, lead=0.2)
    # espeak-ng speaks "on the" as one unit, and so it comes back
    assert speech.words == ("The", "keys", "to", "the", "cabinet", "are", "on the", "table")
    assert speech.text == SENTENCE.rstrip(".")
    assert speech.audio.rate == 16000
    x, rate = speech.audio.samples, speech.audio.rate
    starts, ends = zip(*speech.times, strict=True)
    assert starts[0] == pytest.approx(0.2) and all(a < b for a, b in speech.times)
    assert all(b <= a for b, a in zip(ends, starts[1:], strict=False))  # no overlap
    assert ends[-1] <= speech.audio.seconds - 0.2 + 1e-9
    inside = np.zeros(len(x), bool)
    for a, b in speech.times:
        inside[int(a * rate) : int(np.ceil(b * rate))] = True
        assert np.abs(x[int(a * rate) : int(b * rate)]).max() > 0.05  # every word is heard
    energy = x.astype(np.float64) ** 2
    assert energy[~inside].sum() < 0.01 * energy.sum()  # the spans hold (nearly) all of the sound


def test_closing_punctuation_is_no_word():
    # espeak-ng reports a word event for this sentence's full stop
    assert synthesise("Please write a long letter.").words == ("Please", "write", "a", "long", "letter")


def test_longer_words_take_longer():
    speech = synthesise("a cat extraordinarily")
    lengths = [b - a for a, b in speech.times]
    assert lengths[0] < lengths[1] < lengths[2]


def test_nothing_to_say_and_unknown_voices_are_errors():
    with pytest.raises(ValueError, match="empty"):
        synthesise("   ")
    with pytest.raises(SpeechError, match="no voice"):
        synthesise("hello", voice="no-such-voice-xx")
