"""The regression kind (``kind = "regression"``): edges cut in a regressor of one contraction's
force, tested over the contraction's held-out time blocks; resumable in the provenance-keyed
store.

A study file (`studies/hdsemg_force_grid.toml` is one) names its ``recording`` (an OT
BioLab+ export, `read_otb`, from the working directory) and ``target`` (the auxiliary channel
predicted); its tables (`spec`: ``[windows]``, ``[model]``, ``[train]``, ``[[interventions]]``,
``[stats]``) each hold keys over defaults; ``study run --epochs`` overrides ``epochs``. The
independent unit is the held-out block, not the overlapping window (`cuts`).

The store (`emg_lens.studies.store.CellStore`, one subject: the contraction) keeps the
trained model (its checkpoint under ``model/`` and a cell with its digest, reused while the
data, the ``[model]`` and ``[train]`` tables and the code are unchanged), the baselines (a
mean predictor and a ridge regression on each channel's RMS), and one cell per cut: its
blocks' MSEs, reused only with the same model, data and code digests and edge set. The
statistics are computed from the cells, so ``[stats]`` and ``description`` are not part of
the study's fingerprint.

Outputs: ``summary.csv``, ``blocks.csv``, ``baselines.csv`` and the ``cuts`` figure
(`RegressionStudyResult`); its modules, as every kind's: docs/ARCHITECTURE.md maps them.
"""

from emg_lens.studies.regression.cuts import CUT_COLUMNS, block_errors, cut_table, regression_cuts
from emg_lens.studies.regression.result import RegressionStudyResult
from emg_lens.studies.regression.runner import KIND, check_regression, run_regression_study
from emg_lens.studies.regression.spec import RegressionSpec

__all__ = [
    "CUT_COLUMNS",
    "KIND",
    "RegressionSpec",
    "RegressionStudyResult",
    "block_errors",
    "check_regression",
    "cut_table",
    "regression_cuts",
    "run_regression_study",
]
