"""Screening and discovery: find the attention-edge circuit, not only test a guessed one.

The "edges" are attention knockouts (a query group's keys of another group, per layer and
head, cut with ``-inf`` on the logits), not the component-to-component edges of ACDC or EAP:

- `screen` estimates the effect of *every* candidate of a family (`default_family`: each
  layer x head x query group -> key group, compiled once, `compile_family`) from one clean
  forward and one backward (the masked pattern exact, AtP*; the last layers' cuts exact,
  `last_layers`; an earlier one's downstream effect linearised, with a ``risk`` that predicts
  its error, or weighed by integrated gradients, EAP-IG); `Screen.verify` measures the
  riskiest, the best and a random sample exactly, and bounds what the ranking missed;
- `discover` cuts candidates greedily, least important first, while the exact metric stays
  within ``tau`` of its full-to-empty range and every class keeps its accuracy, and returns
  the circuit as edge sets that parse back (``Discovery.complement`` is what a study cuts to
  run only the circuit); the candidates are tried in the screen's order or, with
  ``method="gates"``, in the order learned edge gates give them (`gates`); `stability`
  measures how the circuit changes over resamples and subjects; `Discovery.areas` gives
  MIB's CPR and CMD of its faithfulness curve (`faithfulness_areas`).

`emg_lens.discovery.study` runs both as a study (``kind = "discovery"``) over many subjects,
resumable in the provenance-keyed store; `emg_lens.discovery.plots` draws them."""

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
from emg_lens.discovery.metrics import METRICS, faithfulness_areas, window_metric
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
