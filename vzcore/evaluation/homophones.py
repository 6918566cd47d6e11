"""A homophone-style agreement set for speech: sentences whose cue word decides how a homophone is spelt.

Mohebbi et al. (EMNLP 2023) asked which context a speech model uses to spell a homophone — a word
whose sound is the same for two spellings, so the audio of the word alone cannot decide — and scored
the share of value zeroing's cross-attention mass on the word that decides it (the *cue*). This set is
English and synthetic: eight pairs of homophones (sun/son, write/right, flour/flower, sea/see,
week/weak, pear/pair, knight/night, blew/blue), each spelling in a sentence of our own where one
other word, chosen by hand, decides the spelling ("The ship sailed across the sea": `sailed`). The
sentences are spoken by espeak-ng (`vzcore.speech`), so the homophone's audio is the same in both
sentences of a pair up to prosody.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["HOMOPHONES", "HomophoneItem", "unit_of"]


@dataclass(frozen=True)
class HomophoneItem:
    """A sentence, its homophone (as spelt there), the word that decides the spelling, and the other spelling."""

    sentence: str
    homophone: str
    cue: str
    other: str


HOMOPHONES: tuple[HomophoneItem, ...] = (
    HomophoneItem("The sun was shining in the sky.", "sun", "shining", "son"),
    HomophoneItem("My son was playing with his toys.", "son", "toys", "sun"),
    HomophoneItem("Please write a long letter.", "write", "letter", "right"),
    HomophoneItem("Turn right at the next corner.", "right", "turn", "write"),
    HomophoneItem("We baked bread with white flour.", "flour", "baked", "flower"),
    HomophoneItem("She picked a red flower from the garden.", "flower", "garden", "flour"),
    HomophoneItem("The ship sailed across the sea.", "sea", "sailed", "see"),
    HomophoneItem("With these glasses I can see far.", "see", "glasses", "sea"),
    HomophoneItem("The meeting is next week.", "week", "meeting", "weak"),
    HomophoneItem("The old man felt weak and tired.", "weak", "tired", "week"),
    HomophoneItem("He ate a sweet pear for lunch.", "pear", "ate", "pair"),
    HomophoneItem("She bought a new pair of shoes.", "pair", "shoes", "pear"),
    HomophoneItem("The brave knight rode his horse.", "knight", "horse", "night"),
    HomophoneItem("The night was dark and quiet.", "night", "dark", "knight"),
    HomophoneItem("The wind blew all day.", "blew", "wind", "blue"),
    HomophoneItem("The sky was bright blue.", "blue", "sky", "blew"),
)


def unit_of(units: Sequence[str], word: str) -> int:
    """The index of the spoken unit (a word, or words spoken as one: "on the") that holds `word`."""
    found = [k for k, u in enumerate(units) if word.lower() in re.findall(r"[a-z']+", u.lower())]
    if len(found) != 1:
        raise ValueError(f"{word!r} is in {len(found)} of the units {list(units)}; expected exactly one")
    return found[0]
