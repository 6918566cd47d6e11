"""`vz score --targets`: which rows of each example's maps a run scores and stores.

- `all` (the default): every row, a v3 store when dense.
- `last`: the last token that is not a special token (a decoder's next-token position; the token
  before BERT's closing [SEP]).
- `mask`: every position of the tokenizer's mask token ([MASK], `<mask>`); an example without one
  is skipped with that reason. A tokenizer without a mask token is refused before scoring.
- `column=NAME`: the token positions in the dataset's column NAME (an int or a list of ints per row,
  counting the model's tokens, special ones included; negatives count from the end). A row whose
  positions are missing or outside its tokens is skipped with the reason.

Only the chosen rows are scored (`vzcore.score(targets=...)`: `|targets| * n` pairs per layer
instead of `n^2`) and stored; the store records the kind (root attribute `targets`) and each
example's rows (part arrays `row_offset`, `rows`: `vzcore.store.forms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TARGET_CHOICES", "TargetSpec", "parse_targets", "target_rows"]

TARGET_CHOICES = ("all", "last", "mask", "column=NAME")


@dataclass(frozen=True)
class TargetSpec:
    """Which rows to keep: `all`, `last`, `mask`, or `column` (with its `column` name)."""

    kind: str = "all"
    column: str | None = None

    def __str__(self) -> str:
        return f"column={self.column}" if self.kind == "column" else self.kind

    @property
    def all_rows(self) -> bool:
        return self.kind == "all"

    def to_attr(self) -> dict | None:
        """The store's root attribute `targets` (None: every row)."""
        if self.all_rows:
            return None
        return {"kind": self.kind, "column": self.column} if self.kind == "column" else {"kind": self.kind}


def parse_targets(text: str) -> TargetSpec:
    """Parse `--targets` (`ValueError` naming the choices)."""
    kind, _, column = text.strip().partition("=")
    if kind == "column" and column.strip():
        return TargetSpec("column", column.strip())
    if column or kind not in TARGET_CHOICES:
        raise ValueError(f"--targets must be one of {', '.join(TARGET_CHOICES)}, not {text!r}")
    return TargetSpec(kind)


def target_rows(
    spec: TargetSpec, token_ids: Sequence[int], special_ids: Sequence[int], mask_id: int | None, given: object = None
) -> list[int]:
    """Return the rows of one example to score (ascending; empty when it has none); `given` is the
    row's value of the positions column. A `ValueError` says why given positions cannot be used."""
    n = len(token_ids)
    if spec.kind == "all":
        return list(range(n))
    if spec.kind == "column":
        return _given_rows(spec, given, n)
    if spec.kind == "mask":
        return [i for i, t in enumerate(token_ids) if t == mask_id]
    special = set(special_ids)
    plain = [i for i, t in enumerate(token_ids) if t not in special]
    return [plain[-1]] if plain else [n - 1]


def _given_rows(spec: TargetSpec, given: object, n: int) -> list[int]:
    values = [given] if isinstance(given, int) else given
    if values is None or isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
        raise ValueError(f"--targets {spec}: {given!r} is not a position or a list of positions")
    rows = list(values)
    if not rows or not all(isinstance(r, int) and not isinstance(r, bool) for r in rows):
        raise ValueError(f"--targets {spec}: {given!r} is not a position or a list of positions")
    bad = [r for r in rows if not -n <= r < n]
    if bad:
        raise ValueError(f"--targets {spec}: positions {bad} outside the example's {n} tokens")
    return sorted({r % n for r in rows})
