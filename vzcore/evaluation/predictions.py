"""What the model itself says about a probe: its agreement choice and its reaction to blanked-out tokens.

Agreement (models with an LM head): masked models compare the logits of the good and the bad
word's first piece at the mask; causal models the log-probability of the good and the bad word's
pieces after the prefix. Blank-out: every context token (special tokens and the target row
excepted) is removed in turn — replaced by the mask or unknown token (positions kept) or deleted —
and the change of the target's prediction is measured; one example's removals run as one batch.
"""

from __future__ import annotations

import numpy as np
import torch

from vzcore.evaluation.probes import Probe
from vzcore.loading import ModelHandle

__all__ = ["OUTPUTS", "REMOVALS", "agreement_scores", "blank_out", "removable", "removal_token"]

REMOVALS = ("mask", "unk", "delete")
# prob: the gold word's probability at the target row; argmax: that of the clean input's top word;
# diff: gold minus foil probability; cosine: the cosine distance of the target's final representation.
OUTPUTS = ("auto", "prob", "argmax", "diff", "cosine")


def _logits(handle: ModelHandle, ids: torch.Tensor) -> torch.Tensor:
    """Return `[b, n, vocab]` LM logits of `ids` (`[b, n]`)."""
    if handle.lm is None:
        raise ValueError(f"{handle.name} has no LM head")
    with torch.no_grad():
        return handle.lm(input_ids=ids.to(handle.device)).logits.float().cpu()


def agreement_scores(handle: ModelHandle, probe: Probe) -> tuple[float, float]:
    """Return the model's (good, bad) scores for `probe`: NaN without a foil or where the two tie by construction."""
    if handle.lm is None:
        raise ValueError(f"{handle.name} has no LM head: no agreement accuracy")
    if not probe.bad_ids or probe.good_ids == probe.bad_ids:
        return float("nan"), float("nan")
    prefix = list(probe.token_ids)
    if not probe.causal:
        logits = _logits(handle, torch.tensor([prefix]))[0, probe.row]
        if probe.good_ids[0] == probe.bad_ids[0]:  # only the first piece is compared: a tie tells nothing
            return float("nan"), float("nan")
        return float(logits[probe.good_ids[0]]), float(logits[probe.bad_ids[0]])
    scores = []
    for word in (probe.good_ids, probe.bad_ids):
        ids = torch.tensor([prefix + list(word)])
        logp = torch.log_softmax(_logits(handle, ids)[0], -1)
        scores.append(float(sum(logp[len(prefix) - 1 + k, t] for k, t in enumerate(word))))
    return scores[0], scores[1]


def removal_token(tokenizer, removal: str) -> int | None:
    """Return the id that replaces a removed token (None for `delete`); raise if the tokenizer has none."""
    if removal not in REMOVALS:
        raise ValueError(f"unknown removal {removal!r}; choose from: {', '.join(REMOVALS)}")
    if removal == "delete":
        return None
    for attr in ("mask_token_id", "unk_token_id") if removal == "mask" else ("unk_token_id",):
        token = getattr(tokenizer, attr, None)
        if token is not None:
            return int(token)
    raise ValueError(f"the tokenizer has no {removal} token: use --removal delete")


def removable(probe: Probe) -> list[int]:
    """Return the positions blank-out removes: every token but the special ones and the target row."""
    return [k for k in range(probe.n) if k != probe.row and k not in probe.special]


def blank_out(handle: ModelHandle, probe: Probe, removal: str, output: str) -> tuple[list[int], np.ndarray]:
    """Return the removed positions and the change of the target's prediction after each removal
    (`[positions]`, larger = the prediction moved more), all removals of `probe` in one batch."""
    if output not in OUTPUTS:
        raise ValueError(f"unknown output {output!r}; choose from: {', '.join(OUTPUTS)}")
    if output == "auto":
        output = "prob" if handle.lm is not None else "cosine"
    if output != "cosine" and handle.lm is None:
        raise ValueError(f"--output {output} needs an LM head, and {handle.name} has none: use cosine")
    if output == "diff" and not probe.bad_ids:
        raise ValueError(f"{probe.example_id}: --output diff needs a foil word")
    positions = removable(probe)
    if not positions:
        return positions, np.zeros(0)
    replace = removal_token(handle.tokenizer, removal)
    clean = list(probe.token_ids)
    variants, rows = [], []
    for j in positions:
        if replace is None:
            variants.append(clean[:j] + clean[j + 1 :])
            rows.append(probe.row - (j < probe.row))
        else:
            variants.append([*clean[:j], replace, *clean[j + 1 :]])
            rows.append(probe.row)
    batch = torch.tensor([clean])  # apart from the variants: deleting makes them one shorter
    moved = torch.tensor(variants)
    index = torch.arange(len(positions))
    if output == "cosine":
        with torch.no_grad():
            h0 = handle.model(input_ids=batch.to(handle.device)).last_hidden_state[0, probe.row].float().cpu()
            h = handle.model(input_ids=moved.to(handle.device)).last_hidden_state.float().cpu()[index, rows]
        change = 1 - torch.nn.functional.cosine_similarity(h, h0[None], dim=-1)
        return positions, change.double().numpy()
    p0 = torch.softmax(_logits(handle, batch)[0, probe.row], -1)
    p = torch.softmax(_logits(handle, moved)[index, rows], -1)
    if output == "prob":
        change = p0[probe.good_ids[0]] - p[:, probe.good_ids[0]]
    elif output == "argmax":
        top = int(p0.argmax())
        change = p0[top] - p[:, top]
    else:
        gold, foil = probe.good_ids[0], probe.bad_ids[0]
        change = (p0[gold] - p0[foil]) - (p[:, gold] - p[:, foil])
    return positions, change.double().numpy()
