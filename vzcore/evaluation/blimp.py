"""Number-agreement examples: BLiMP minimal pairs (Warstadt et al., TACL 2020) and users' own JSONL.

An example is a sentence cut into whitespace words, the *target* word (the one whose number is
decided) and the *cue* words (the ones that decide it). For BLiMP both come from the pair's own
fields and the templates' fixed structure (no parser): the target is the word where
`sentence_good` and `sentence_bad` differ; the cue, per paradigm:

- `ana` (anaphor agreement): the subject's last word. The prefix is subject, auxiliaries, verb and
  an optional preposition; they are peeled off from the right ("A lot of waitresses complained
  about" -> "waitresses"; "Harvard University shocks" -> "University").
- `dna`, `dnaa` (determiner–noun, without and with an adjective): the noun after the determiner,
  the last word of `two_prefix_word` (its head: "these art galleries" -> "galleries").
- `darn` (subject–verb with a relational-noun distractor): the word before the first "of" or
  "about" in the prefix, the subject's head ("A niece of most senators" -> "niece").
- `rpsv` (regular plural subject–verb): the prefix's last word ("Most legislatures").

The five paradigms ship with the package (`data/blimp/`, CC BY 4.0, attribution in its README).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "PARADIGMS",
    "AgreementExample",
    "BlimpError",
    "load_agreement_jsonl",
    "load_blimp",
    "parse_blimp_pair",
    "strip_punctuation",
]

DATA_DIR = Path(__file__).parent / "data" / "blimp"

# Paper id -> BLiMP paradigm (the file name without `.jsonl`, the hub configuration name).
PARADIGMS = {
    "ana": "anaphor_number_agreement",
    "dna": "determiner_noun_agreement_2",
    "dnaa": "determiner_noun_agreement_with_adj_2",
    "darn": "distractor_agreement_relational_noun",
    "rpsv": "regular_plural_subject_verb_agreement_1",
}
_AUXILIARIES = frozenset(
    [
        "is",
        "are",
        "was",
        "were",
        "has",
        "have",
        "had",
        "do",
        "does",
        "did",
        "can",
        "could",
        "will",
        "would",
        "should",
        "might",
        "must",
        "may",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "hasn't",
        "haven't",
        "hadn't",
        "don't",
        "doesn't",
        "didn't",
        "can't",
        "couldn't",
        "won't",
        "wouldn't",
        "shouldn't",
        "mightn't",
        "mustn't",
    ]
)
_ANA_PREPOSITIONS = frozenset(["about", "with", "from", "to", "at", "on", "for", "of", "in", "by", "like"])
_DISTRACTOR_PREPOSITIONS = ("of", "about")
_PUNCTUATION = ".,;:!?\"'"


class BlimpError(ValueError):
    """A pair or a file this module cannot read as an agreement example (the message says which)."""


@dataclass(frozen=True)
class AgreementExample:
    """One agreement example: whitespace words of the good sentence, the target and the cue words."""

    id: str  # unique within a run, e.g. "ana-17"
    phenomenon: str
    text: str  # the good sentence
    target: int  # word index of the target
    cues: tuple[int, ...]  # word indices of the cue
    good: str | None = None  # the target word as in the good sentence (no punctuation)
    bad: str | None = None  # the foil in the bad sentence

    @property
    def words(self) -> list[str]:
        return self.text.split()

    def cue_words(self) -> list[str]:
        """Return the cue words without punctuation."""
        return [strip_punctuation(self.words[k]) for k in self.cues]

    def target_word(self) -> str:
        return strip_punctuation(self.words[self.target])


def strip_punctuation(word: str) -> str:
    """Return `word` without leading or trailing punctuation (`herself.` -> `herself`)."""
    return word.strip(_PUNCTUATION) or word


def _target_index(good: list[str], bad: list[str], where: str) -> int:
    if len(good) != len(bad):
        raise BlimpError(f"{where}: sentence_good and sentence_bad have different word counts")
    diff = [k for k, (g, b) in enumerate(zip(good, bad, strict=True)) if g != b]
    if not diff:
        raise BlimpError(f"{where}: sentence_good and sentence_bad are the same")
    return diff[0]  # "look like" vs "looks like": only the first word differs anyway


def _ana_cue(prefix: list[str]) -> int:
    """Return the index of the subject's last word: peel preposition, verb and auxiliaries off."""
    k = len(prefix)
    if k and prefix[k - 1].lower() in _ANA_PREPOSITIONS:
        k -= 1
    k -= 1  # the verb
    while k > 0 and prefix[k - 1].lower() in _AUXILIARIES:
        k -= 1
    return k - 1


def _darn_cue(prefix: list[str], where: str) -> int:
    for k, w in enumerate(prefix):
        if k > 0 and w.lower() in _DISTRACTOR_PREPOSITIONS:
            return k - 1
    raise BlimpError(f"{where}: no 'of' or 'about' after the subject's head in {' '.join(prefix)!r}")


def parse_blimp_pair(record: dict, phenomenon: str) -> AgreementExample:
    """Return the agreement example of one BLiMP pair of paradigm `phenomenon` (a key of `PARADIGMS`)."""
    if phenomenon not in PARADIGMS:
        raise BlimpError(f"unknown phenomenon {phenomenon!r}; choose from: {', '.join(PARADIGMS)}")
    pid = record.get("pairID", "?")
    where = f"{PARADIGMS[phenomenon]} pair {pid}"
    try:
        good, bad = record["sentence_good"].split(), record["sentence_bad"].split()
    except KeyError as err:
        raise BlimpError(f"{where}: missing field {err}") from None
    target = _target_index(good, bad, where)
    try:
        if phenomenon in ("dna", "dnaa"):
            prefix_len = len(record["two_prefix_prefix_good"].split())
            cue = prefix_len + len(record["two_prefix_word"].split()) - 1
        else:
            prefix = record["one_prefix_prefix"].split()
            if phenomenon == "ana":
                cue = _ana_cue(prefix)
            elif phenomenon == "darn":
                cue = _darn_cue(prefix, where)
            else:
                cue = len(prefix) - 1
    except KeyError as err:
        raise BlimpError(f"{where}: missing field {err}") from None
    if not 0 <= cue < len(good) or cue == target:
        raise BlimpError(f"{where}: the cue found ({cue}) is not a word apart from the target")
    return AgreementExample(
        id=f"{phenomenon}-{pid}",
        phenomenon=phenomenon,
        text=record["sentence_good"],
        target=target,
        cues=(cue,),
        good=strip_punctuation(good[target]),
        bad=strip_punctuation(bad[target]),
    )


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with path.open() as f:
        for k, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise BlimpError(f"{path}:{k}: not JSON ({err.msg})") from None
    return rows


def load_blimp(
    source: str | Path | None = None, phenomena: Sequence[str] = tuple(PARADIGMS), limit: int | None = None
) -> list[AgreementExample]:
    """Return the first `limit` examples of each of `phenomena` from `source`.

    `source`: None (the copies shipped with the package), a folder of BLiMP JSONL files named
    after their paradigms, or a hub dataset name such as `nyu-mll/blimp` (where reachable).
    """
    unknown = [p for p in phenomena if p not in PARADIGMS]
    if unknown:
        raise BlimpError(f"unknown phenomenon {unknown[0]!r}; choose from: {', '.join(PARADIGMS)}")
    out: list[AgreementExample] = []
    for p in phenomena:
        rows = list(_paradigm_rows(source, PARADIGMS[p], limit))
        out += [parse_blimp_pair(r, p) for r in rows[: limit or None]]
    return out


def _paradigm_rows(source: str | Path | None, paradigm: str, limit: int | None) -> Iterable[dict]:
    folder = DATA_DIR if source is None else Path(source)
    if folder.is_dir():
        path = folder / f"{paradigm}.jsonl"
        if not path.exists():
            raise BlimpError(f"{folder} has no {paradigm}.jsonl (a BLiMP folder holds one file per paradigm)")
        return _read_jsonl(path)
    if "/" not in str(source) or Path(str(source)).exists():
        raise BlimpError(f"--blimp {source}: not a folder of BLiMP JSONL files nor a hub dataset name")
    try:
        import datasets

        split = "train" if not limit else f"train[:{limit}]"
        return list(datasets.load_dataset(str(source), paradigm, split=split))
    except Exception as err:
        first = (str(err).strip().splitlines() or [""])[0]  # one line: hub errors can run to pages
        raise BlimpError(f"cannot load {source} ({paradigm}) from the hub: {type(err).__name__}: {first}") from None


def load_agreement_jsonl(path: str | Path, limit: int | None = None) -> list[AgreementExample]:
    """Return a user's agreement examples: JSONL lines with `text`, `target` (a word index), `cues`
    (word indices), optional `good`/`bad` words, `id` and `phenomenon` (default "custom")."""
    path = Path(path)
    if not path.is_file():
        raise BlimpError(f"agreement data {path} does not exist")
    out = []
    for k, row in enumerate(_read_jsonl(path)[: limit or None], 1):
        where = f"{path} line {k}"
        missing = [f for f in ("text", "target", "cues") if f not in row]
        if missing:
            raise BlimpError(f"{where}: missing field(s) {', '.join(missing)} (need text, target, cues)")
        words = str(row["text"]).split()
        cues = row["cues"] if isinstance(row["cues"], list) else [row["cues"]]
        indices = [row["target"], *cues]
        if not cues or not all(isinstance(i, int) and 0 <= i < len(words) for i in indices):
            raise BlimpError(f"{where}: target and cues must be word indices 0..{len(words) - 1} of the text")
        if row["target"] in cues:
            raise BlimpError(f"{where}: the target word cannot be its own cue")
        good = row.get("good") or strip_punctuation(words[row["target"]])
        out.append(
            AgreementExample(
                id=str(row.get("id", f"custom-{k - 1}")),
                phenomenon=str(row.get("phenomenon", "custom")),
                text=str(row["text"]),
                target=int(row["target"]),
                cues=tuple(int(c) for c in cues),
                good=good,
                bad=row.get("bad"),
            )
        )
    if not out:
        raise BlimpError(f"agreement data {path} holds no examples")
    return out
