"""Probes: the target row and the cue tokens through the tokenizer's own alignment, for a WordPiece
(MiniLM) and a byte-level BPE (SmolLM2) tokenizer."""

from __future__ import annotations

import pytest

from vzcore.evaluation.blimp import AgreementExample, load_blimp
from vzcore.evaluation.probes import ProbeError, make_probe, make_probes, word_spans


@pytest.fixture(scope="module")
def wordpiece():
    import transformers

    from vzcore.loading import resolve_short_name

    try:
        return transformers.AutoTokenizer.from_pretrained(resolve_short_name("minilm"))
    except (ModuleNotFoundError, OSError) as e:
        pytest.skip(str(e))


def _ex(text, target, cues, good=None, bad=None, phen="ana"):
    return AgreementExample(f"{phen}-0", phen, text, target, tuple(cues), good, bad)


def test_word_spans_leave_edge_punctuation_out():
    text = "The Impressionists hasn't hurt herself."
    assert [text[s:e] for s, e in word_spans(text)] == ["The", "Impressionists", "hasn't", "hurt", "herself"]


def test_masked_probe_marks_every_cue_piece_or_the_first(wordpiece):
    ex = _ex("The Impressionists don't question themselves.", 4, [1], "themselves", "himself")
    p = make_probe(ex, wordpiece, causal=False)
    assert p.tokens[p.row] == "[MASK]" and p.tokens[0] == "[CLS]" and p.tokens[-1] == "[SEP]"
    pieces = [p.tokens[k] for k in p.cues]
    assert len(pieces) > 1 and "".join(t.removeprefix("##") for t in pieces) == "impressionists"
    first = make_probe(ex, wordpiece, causal=False, first_subtoken=True)
    assert first.cues == p.cues[:1]
    assert wordpiece.convert_ids_to_tokens([p.good_ids[0], p.bad_ids[0]]) == ["themselves", "himself"]
    assert p.special == (0, p.n - 1) and not p.cue_at_row


def test_masked_probe_of_a_determiner_keeps_the_period_off_the_cue(wordpiece):
    ex = load_blimp(phenomena=["dna"], limit=1)[0]  # Some dog stunned this committee.
    p = make_probe(ex, wordpiece, causal=False)
    assert [p.tokens[k] for k in p.cues] == ["committee"] and p.tokens[p.row] == "[MASK]"
    assert p.tokens[p.row + 1] == "committee"


def test_causal_probe_is_the_prefix_before_the_target(smollm2_tokenizer):
    tok = smollm2_tokenizer
    p = make_probe(_ex("Susan revealed herself.", 2, [0], "herself", "themselves"), tok, causal=True)
    assert tok.decode(list(p.token_ids)) == "Susan revealed" and p.row == p.n - 1
    assert tok.decode([p.token_ids[k] for k in p.cues]) == "Susan" and not p.cue_at_row
    assert tok.decode(list(p.good_ids)) == " herself" and tok.decode(list(p.bad_ids)) == " themselves"
    # BPE: a word split in pieces keeps all of them (the space rides on the first piece)
    p = make_probe(_ex("The Impressionists don't question themselves.", 4, [1]), tok, causal=True)
    assert tok.decode([p.token_ids[k] for k in p.cues]) == " Impressionists"


def test_causal_probes_flag_a_cue_at_the_row_and_refuse_a_cue_after_the_target(smollm2_tokenizer):
    p = make_probe(_ex("Paula references Robert.", 1, [0], phen="rpsv"), smollm2_tokenizer, causal=True)
    assert p.cue_at_row and p.row == p.cues[-1] and smollm2_tokenizer.decode(list(p.token_ids)) == "Paula"
    with pytest.raises(ProbeError, match="does not precede"):
        make_probe(load_blimp(phenomena=["dna"], limit=1)[0], smollm2_tokenizer, causal=True)
    probes, skipped = make_probes(load_blimp(phenomena=["dnaa", "darn"], limit=2), smollm2_tokenizer, True)
    assert [p.phenomenon for p in probes] == ["darn", "darn"] and len(skipped) == 2
