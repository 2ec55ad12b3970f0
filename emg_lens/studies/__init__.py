"""Declarative studies: specs (what to ablate), the runner (doing it efficiently and checking
that it took effect), statistics, a resumable store and figures; and training studies, which
train one model per subject, architecture and input set and compare them (`training`)."""

from emg_lens.studies.grid import Condition, expand_grid
from emg_lens.studies.load import load_spec
from emg_lens.studies.result import StudyResult, summarize
from emg_lens.studies.runner import StudyError, find_models, run_study
from emg_lens.studies.spec import Intervention, LayerSpec, StatsSpec, StudySpec
from emg_lens.studies.training import (
    TrainingInput,
    TrainingStudyResult,
    TrainingStudySpec,
    check_models,
    run_training_study,
    select_channels,
)

__all__ = [
    "Condition",
    "Intervention",
    "LayerSpec",
    "StatsSpec",
    "StudyError",
    "StudyResult",
    "StudySpec",
    "TrainingInput",
    "TrainingStudyResult",
    "TrainingStudySpec",
    "check_models",
    "expand_grid",
    "find_models",
    "load_spec",
    "run_study",
    "run_training_study",
    "select_channels",
    "summarize",
]
