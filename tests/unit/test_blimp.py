"""Target and cue words of a fixed sample of BLiMP pairs (every 50th pair of each paradigm), against
expectations written by hand from the sentences, and the checks on users' agreement files."""

from __future__ import annotations

import json

import pytest

from vzcore.evaluation.blimp import PARADIGMS, BlimpError, load_agreement_jsonl, load_blimp

# pairID -> (target word, cue word), read off the sentences by hand.
EXPECTED = {
    "ana": {
        0: ("herself", "Susan"),
        50: ("themselves", "men"),
        100: ("themselves", "men"),
        150: ("herself", "Janice"),
        200: ("themselves", "teachers"),
        250: ("herself", "Andrea"),
        300: ("herself", "Tina"),
        350: ("themselves", "pedestrians"),
        400: ("themselves", "children"),
        450: ("themselves", "people"),
        500: ("themselves", "actors"),
        550: ("themselves", "girls"),
        600: ("herself", "Teresa"),
        650: ("itself", "essay"),
        700: ("themselves", "adults"),
        750: ("herself", "Carol"),
        800: ("herself", "Gina"),
        850: ("themselves", "Doctors"),
        900: ("themselves", "children"),
        950: ("himself", "Douglas"),
    },
    "dna": {
        0: ("this", "committee"),
        50: ("these", "companies"),
        100: ("this", "student"),
        150: ("that", "bank"),
        200: ("those", "banks"),
        250: ("this", "school"),
        300: ("these", "children"),
        350: ("those", "cups"),
        400: ("this", "dish"),
        450: ("this", "park"),
        500: ("those", "chairs"),
        550: ("this", "teacher"),
        600: ("these", "girls"),
        650: ("these", "books"),
        700: ("those", "paintings"),
        750: ("that", "picture"),
        800: ("that", "cup"),
        850: ("these", "dancers"),
        900: ("that", "girl"),
        950: ("this", "pamphlet"),
    },
    "dnaa": {
        0: ("these", "books"),
        50: ("this", "drawing"),
        100: ("this", "cafe"),
        150: ("that", "park"),
        200: ("these", "patients"),
        250: ("that", "actor"),
        300: ("these", "stories"),
        350: ("this", "girl"),
        400: ("that", "adult"),
        450: ("that", "campus"),
        500: ("this", "book"),
        550: ("that", "patient"),
        600: ("those", "teenagers"),
        650: ("those", "theaters"),
        700: ("these", "schools"),
        750: ("that", "senator"),
        800: ("that", "mall"),
        850: ("that", "government"),
        900: ("those", "senators"),
        950: ("that", "patient"),
    },
    "darn": {
        0: ("hasn't", "niece"),
        50: ("have", "paintings"),
        100: ("weren't", "essays"),
        150: ("is", "story"),
        200: ("have", "pictures"),
        250: ("astounds", "article"),
        300: ("weren't", "granddaughters"),
        350: ("astounds", "picture"),
        400: ("isn't", "movie"),
        450: ("distracts", "movie"),
        500: ("are", "paintings"),
        550: ("hasn't", "article"),
        600: ("has", "picture"),
        650: ("aren't", "nephews"),
        700: ("was", "book"),
        750: ("don't", "books"),
        800: ("have", "paintings"),
        850: ("hasn't", "print"),
        900: ("alarm", "shows"),
        950: ("aren't", "pamphlets"),
    },
    "rpsv": {
        0: ("references", "Paula"),
        50: ("lifts", "Heidi"),
        100: ("buy", "banks"),
        150: ("wasn't", "Clyde"),
        200: ("was", "Paul"),
        250: ("hasn't", "doctor"),
        300: ("wasn't", "Donald"),
        350: ("have", "associations"),
        400: ("has", "Literature"),
        450: ("has", "Sara"),
        500: ("has", "print"),
        550: ("aren't", "guys"),
        600: ("is", "teenager"),
        650: ("impresses", "bird"),
        700: ("care", "teachers"),
        750: ("has", "Roger"),
        800: ("astound", "reports"),
        850: ("hasn't", "Jill"),
        900: ("has", "Tara"),
        950: ("talk", "Impressionists"),
    },
}


@pytest.fixture(scope="module")
def shipped():
    return {ex.id: ex for ex in load_blimp()}


@pytest.mark.parametrize("phenomenon", list(PARADIGMS))
def test_target_and_cue_match_the_hand_labelled_sample(shipped, phenomenon):
    expected = EXPECTED[phenomenon]
    assert len(expected) == 20
    found = {}
    for pid in expected:
        ex = shipped[f"{phenomenon}-{pid}"]
        found[pid] = (ex.target_word(), ex.cue_words()[0])
        assert len(ex.cues) == 1 and ex.cues[0] != ex.target
    assert found == expected


def test_the_package_ships_all_five_paradigms_with_their_licence():
    from vzcore.evaluation.blimp import DATA_DIR

    assert "CC BY 4.0" in (DATA_DIR / "README.md").read_text()
    counts = {}
    for ex in load_blimp(limit=3):
        counts[ex.phenomenon] = counts.get(ex.phenomenon, 0) + 1
    assert counts == dict.fromkeys(PARADIGMS, 3)


def test_good_and_bad_words_come_from_the_pair():
    ex = load_blimp(phenomena=["dna"], limit=1)[0]
    assert (ex.good, ex.bad, ex.text) == ("this", "these", "Some dog stunned this committee.")


def test_a_folder_must_hold_the_paradigm_files(tmp_path):
    with pytest.raises(BlimpError, match=r"has no anaphor_number_agreement\.jsonl"):
        load_blimp(tmp_path, ["ana"])
    with pytest.raises(BlimpError, match="unknown phenomenon 'xyz'; choose from: ana"):
        load_blimp(None, ["xyz"])


def test_users_agreement_jsonl(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [{"text": "The keys to the cabinet are here.", "target": 5, "cues": [1], "good": "are", "bad": "is"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    (ex,) = load_agreement_jsonl(path)
    assert (ex.target_word(), ex.cue_words(), ex.bad, ex.phenomenon) == ("are", ["keys"], "is", "custom")
    path.write_text(json.dumps({"text": "The keys are here.", "target": 9, "cues": [1]}) + "\n")
    with pytest.raises(BlimpError, match=r"word indices 0\.\.3"):
        load_agreement_jsonl(path)
    path.write_text(json.dumps({"text": "The keys are here.", "cues": [1]}) + "\n")
    with pytest.raises(BlimpError, match="missing field"):
        load_agreement_jsonl(path)
