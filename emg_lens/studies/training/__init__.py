"""Training studies: train models per subject on several input sets and compare them.

The IsoNet paper's Table 1 (architecture × {sEMG+ACC, ACC, sEMG}) and Figure 2 (a random 6 sEMG
+ 6 ACC electrode split against 12 sEMG or 12 ACC, repeated over trials) are studies that
*train*: every cell is one model fitted on one subject's training repetitions and scored on its
test repetitions. A study file with ``kind = "training"`` says which data, which architectures
(class names from `emg_lens.models`), which inputs — whole modalities, or random electrode
subsets (for ACC an electrode is its 3 axes) redrawn per trial and subject — and which input is
the reference every other input is tested against, per architecture.

A fusion model given one modality is its single-stream variant: one MLP head or one stem, and
the hierarchical model's fusion stage over that one token stream. That is what the paper's
unimodal rows of Table 1 train, so no architecture refuses an input; a configuration a model
cannot be built with is a `SpecError` before anything trains (`check_models`).

Its modules, one concern each, as every kind's: docs/ARCHITECTURE.md maps them.
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
