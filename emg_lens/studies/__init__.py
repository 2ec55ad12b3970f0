"""Declarative studies: specs (what to ablate), the runner (doing it efficiently and checking
that it took effect), statistics, a resumable store and figures."""

from emg_lens.studies.grid import Condition, expand_grid
from emg_lens.studies.result import StudyResult, summarize
from emg_lens.studies.runner import StudyError, find_models, run_study
from emg_lens.studies.spec import Intervention, LayerSpec, StatsSpec, StudySpec, load_spec

__all__ = [
    "Condition",
    "Intervention",
    "LayerSpec",
    "StatsSpec",
    "StudyError",
    "StudyResult",
    "StudySpec",
    "expand_grid",
    "find_models",
    "load_spec",
    "run_study",
    "summarize",
]
