"""Declarative studies: specs (what to ablate), the runner (doing it efficiently and checking
that it took effect), statistics, a resumable store and figures; and training studies, which
train one model per subject, architecture and input set and compare them (`training`). Every
kind (and `emg_lens.discovery`'s) is behind one interface (`kinds`): `load_spec` reads a study
file once, `run` and `check_study` dispatch on its ``kind``."""

from emg_lens.studies.grid import Condition, expand_grid
from emg_lens.studies.kinds import KINDS, StudyKind, check_study, load_spec, run
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
    "KINDS",
    "Condition",
    "Intervention",
    "LayerSpec",
    "StatsSpec",
    "StudyError",
    "StudyKind",
    "StudyResult",
    "StudySpec",
    "TrainingInput",
    "TrainingStudyResult",
    "TrainingStudySpec",
    "check_models",
    "check_study",
    "expand_grid",
    "find_models",
    "load_spec",
    "run",
    "run_study",
    "run_training_study",
    "select_channels",
    "summarize",
]
