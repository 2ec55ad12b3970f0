"""Screening and discovery: find the attention-edge circuit, not only test a guessed one.

The "edges" are attention knockouts (a query group's keys of another group, per layer and
head, cut with ``-inf`` on the logits), not the component-to-component edges of ACDC or EAP:

- `screen` estimates the effect of *every* candidate of a family (`default_family`: each
  layer x head x query group -> key group) from one clean forward and one backward, with the
  masked pattern computed exactly from the cached scores (the AtP* fix for saturation) and only
  its downstream effect linearised; `Screen.verify` measures the best ones exactly through
  the study runner;
- `discover` cuts candidates greedily, least important first, while the exact metric stays
  within ``tau`` of its full-to-empty range, and returns the circuit as edge sets that parse
  back (``Discovery.complement`` is what a study cuts to run only the circuit).

`emg_lens.discovery.study` runs both as a study (``kind = "discovery"``) over many subjects,
resumable in the provenance-keyed store; `emg_lens.discovery.plots` draws them.
"""

from emg_lens.discovery.exact import ExactPasses, Score
from emg_lens.discovery.family import (
    Candidate,
    cut_edge_set,
    default_family,
    family_from_edges,
    layer_masks,
)
from emg_lens.discovery.metrics import METRICS, window_metric
from emg_lens.discovery.screen import Screen, screen, verify_candidates
from emg_lens.discovery.search import Discovery, discover

__all__ = [
    "METRICS",
    "Candidate",
    "Discovery",
    "ExactPasses",
    "Score",
    "Screen",
    "cut_edge_set",
    "default_family",
    "discover",
    "family_from_edges",
    "layer_masks",
    "screen",
    "verify_candidates",
    "window_metric",
]
