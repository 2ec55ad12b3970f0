"""Screening and discovery: find the attention-edge circuit, not only test a guessed one.

The "edges" are attention knockouts (a query group's keys of another group, per layer and
head, cut with ``-inf`` on the logits), not ACDC's or EAP's component-to-component edges.
`screen` estimates the effect of every candidate of a family (`default_family`) from one clean
forward and one backward, and `Screen.verify` measures the riskiest, the best and a random
sample exactly; `discover` cuts candidates, least important first, while the exact metric and
every class's accuracy stay within ``tau``, and returns the circuit as edge sets that parse back
(`Discovery`); `stability` measures it over resamples and subjects;
`emg_lens.discovery.study` runs it all as a study (``kind = "discovery"``). How each works and
how far to trust it: docs/guide/discovery.md and docs/ARCHITECTURE.md, "Discovery: what to
trust".
"""

from emg_lens.discovery.exact import ExactPasses, Score
from emg_lens.discovery.family import (
    Candidate,
    CompiledFamily,
    compile_family,
    cut_edge_set,
    default_family,
    family_from_edges,
    layer_masks,
)
from emg_lens.discovery.gates import fit_gates, gate_hooks
from emg_lens.discovery.metrics import METRICS, faithfulness_areas
from emg_lens.discovery.planted import (
    ONE_HEAD,
    planted_data,
    planted_rank,
    recovery,
    train_planted,
    training_edges,
)
from emg_lens.discovery.plots import plot_faithfulness, plot_screen, plot_screen_vs_exact
from emg_lens.discovery.screen import (
    ESTIMATORS,
    FLAG_BUDGET,
    IG_STEPS,
    MISS_SAMPLE,
    Screen,
    screen,
    verify_candidates,
)
from emg_lens.discovery.search import SEARCH_METHODS, Discovery, discover
from emg_lens.discovery.stability import bootstrap_stability, jaccard, subject_agreement
from emg_lens.stats.metrics import window_metric

__all__ = [
    "ESTIMATORS",
    "FLAG_BUDGET",
    "IG_STEPS",
    "METRICS",
    "MISS_SAMPLE",
    "ONE_HEAD",
    "SEARCH_METHODS",
    "Candidate",
    "CompiledFamily",
    "Discovery",
    "ExactPasses",
    "Score",
    "Screen",
    "bootstrap_stability",
    "compile_family",
    "cut_edge_set",
    "default_family",
    "discover",
    "faithfulness_areas",
    "family_from_edges",
    "fit_gates",
    "gate_hooks",
    "jaccard",
    "layer_masks",
    "planted_data",
    "planted_rank",
    "plot_faithfulness",
    "plot_screen",
    "plot_screen_vs_exact",
    "recovery",
    "screen",
    "subject_agreement",
    "train_planted",
    "training_edges",
    "verify_candidates",
    "window_metric",
]
