"""Declarative studies, one package per kind over shared machinery: ablation studies cut edge
sets, hooks or modalities in trained models, check that each cut took effect and test the
changes (`ablation`); training studies train one model per subject, architecture and input set
and compare them (`training`); regression studies cut edges in a force regressor and test
them over held-out blocks (`regression`). What they share: each subject's model and data
loaded (`subjects`), a resumable store (`store`), figures and the spec's reading
(`spec_base`, `validate`). Every kind (and `emg_lens.discovery`'s) is behind one
interface (`kinds`): `load_spec` reads a study file once, `run` and `check_study` dispatch on
its ``kind``. Below them, on floors of their own: the statistics (`emg_lens.stats`), the output
protocol (`emg_lens.output`), user-code consent (`emg_lens.user_code`) and the models folder
(`emg_lens.model_folder`)."""

from emg_lens.errors import StudyError
from emg_lens.model_folder import find_models
from emg_lens.studies.ablation.grid import Condition, expand_grid
from emg_lens.studies.ablation.planted import format_findings, planted_findings
from emg_lens.studies.ablation.plots import boxplots
from emg_lens.studies.ablation.result import StudyResult
from emg_lens.studies.ablation.runner import run_study
from emg_lens.studies.ablation.spec import Intervention, LayerSpec, StudySpec
from emg_lens.studies.ablation.summary import summarize
from emg_lens.studies.kinds import KINDS, StudyKind, check_study, load_spec, run
from emg_lens.studies.spec_base import StatsSpec
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
    "boxplots",
    "check_models",
    "check_study",
    "expand_grid",
    "find_models",
    "format_findings",
    "load_spec",
    "planted_findings",
    "run",
    "run_study",
    "run_training_study",
    "select_channels",
    "summarize",
]
