"""`vz score --targets`: which rows of each example's maps a run scores and stores.

- `all` (the default): every row, a v3 store when dense.
- `last`: the last token that is not a special token (a decoder's next-token position; the token
  before BERT's closing [SEP]).
- `mask`: every position of the tokenizer's mask token ([MASK], `<mask>`); an example without one
  is skipped with that reason. A tokenizer without a mask token is refused before scoring.

Only the chosen rows are scored (`vzcore.score(targets=...)`: `|targets| * n` pairs per layer
instead of `n^2`) and stored; the store records the kind (root attribute `targets`) and each
example's rows (part arrays `row_offset`, `rows`: `vzcore.store.forms`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["TARGET_CHOICES", "TargetSpec", "parse_targets", "target_rows"]

TARGET_CHOICES = ("all", "last", "mask")


@dataclass(frozen=True)
class TargetSpec:
    """Which rows to keep: one of `TARGET_CHOICES`."""

    kind: str = "all"

    @property
    def all_rows(self) -> bool:
        return self.kind == "all"

    def to_attr(self) -> dict | None:
        """The store's root attribute `targets` (None: every row)."""
        return None if self.all_rows else {"kind": self.kind}


def parse_targets(text: str) -> TargetSpec:
    """Parse `--targets` (`ValueError` naming the choices)."""
    kind = text.strip()
    if kind not in TARGET_CHOICES:
        raise ValueError(f"--targets must be one of {', '.join(TARGET_CHOICES)}, not {text!r}")
    return TargetSpec(kind)


def target_rows(
    spec: TargetSpec, token_ids: Sequence[int], special_ids: Sequence[int], mask_id: int | None
) -> list[int]:
    """Return the rows of one example to score (ascending; empty when it has none)."""
    n = len(token_ids)
    if spec.kind == "all":
        return list(range(n))
    if spec.kind == "mask":
        return [i for i, t in enumerate(token_ids) if t == mask_id]
    special = set(special_ids)
    plain = [i for i, t in enumerate(token_ids) if t not in special]
    return [plain[-1]] if plain else [n - 1]
