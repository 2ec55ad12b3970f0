"""Ablation studies (``kind = "ablation"``, a study file's default): cut edge sets, hooks or
modalities in trained models, one grid of conditions per subject, and test the changes. The
run computes only the cells its store does not hold with the same provenance (a prefix tree
over per-layer masks, every mask verified on the hooked path) and tests every condition
against the baseline, then the claims the file declares. Its modules: docs/ARCHITECTURE.md.
"""

from emg_lens.studies.ablation.claims import Claim
from emg_lens.studies.ablation.grid import BASELINE, Condition, expand_grid
from emg_lens.studies.ablation.result import StudyResult
from emg_lens.studies.ablation.runner import KIND, run_study
from emg_lens.studies.ablation.spec import Intervention, LayerSpec, StudySpec
from emg_lens.studies.ablation.summary import summarize

__all__ = [
    "BASELINE",
    "KIND",
    "Claim",
    "Condition",
    "Intervention",
    "LayerSpec",
    "StudyResult",
    "StudySpec",
    "expand_grid",
    "run_study",
    "summarize",
]
