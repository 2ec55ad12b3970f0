"""Training studies (``kind = "training"``): train models per subject on several input sets and
compare them, as the IsoNet paper's Table 1 (architecture × {sEMG+ACC, ACC, sEMG}) and Figure 2
(random electrode subsets redrawn per trial) do. Every cell is one model fitted on one subject's
training repetitions and scored on its test ones, each input tested against the reference. A
fusion model given one modality is its single-stream variant (the paper's unimodal rows); a
configuration a model cannot be built with is a `SpecError` before anything trains.
"""

from emg_lens.studies.training.grid import (
    AXES_PER_ELECTRODE,
    TrainingCell,
    TrainingInput,
    select_channels,
)
from emg_lens.studies.training.result import TrainingStudyResult, summarize_training
from emg_lens.studies.training.runner import run_training_study
from emg_lens.studies.training.spec import (
    ARCHITECTURES,
    TrainingData,
    TrainingStudySpec,
    check_models,
)

__all__ = [
    "ARCHITECTURES",
    "AXES_PER_ELECTRODE",
    "TrainingCell",
    "TrainingData",
    "TrainingInput",
    "TrainingStudyResult",
    "TrainingStudySpec",
    "check_models",
    "run_training_study",
    "select_channels",
    "summarize_training",
]
