"""The paper's evaluations of context-mixing methods: cue alignment on number agreement and blank-out.

Pure pieces only (no Ray, no Parquet): BLiMP and user agreement data (`blimp`), model inputs with
their target row and cue tokens (`probes`), the model's own predictions (`predictions`) and the
metrics (`metrics`). The `vz evaluate` drivers in `jobs/` run them at scale.
"""

from __future__ import annotations

from vzcore.evaluation.blimp import PARADIGMS, AgreementExample, BlimpError, load_agreement_jsonl, load_blimp
from vzcore.evaluation.metrics import accuracy, bootstrap_ci, cue_share, random_share, spearman
from vzcore.evaluation.probes import Probe, ProbeError, make_probe, make_probes

__all__ = [
    "PARADIGMS",
    "AgreementExample",
    "BlimpError",
    "Probe",
    "ProbeError",
    "accuracy",
    "bootstrap_ci",
    "cue_share",
    "load_agreement_jsonl",
    "load_blimp",
    "make_probe",
    "make_probes",
    "random_share",
    "spearman",
]
