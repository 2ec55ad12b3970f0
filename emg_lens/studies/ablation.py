"""The ablation kind (``kind = "ablation"``, a study file's default): cutting edge sets, hooks
or modalities in trained models, one `StudyKind` (`emg_lens.studies.kinds`)."""

from __future__ import annotations

from emg_lens.studies.check import check_ablation
from emg_lens.studies.kinds import StudyKind
from emg_lens.studies.runner import run_study
from emg_lens.studies.spec import StudySpec

__all__ = ["KIND"]

KIND = StudyKind(
    name="ablation",
    spec=StudySpec,
    run=run_study,
    check=check_ablation,
    refuses={
        "overrides": "of trained models: [data] and [train] overrides are for training "
        "studies (kind = 'training')",
    },
)
