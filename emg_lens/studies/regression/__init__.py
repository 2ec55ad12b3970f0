"""The regression kind (``kind = "regression"``): edges cut in a regressor of one contraction's
force, tested over the contraction's held-out time blocks; resumable in the provenance-keyed
store.

A study file (`studies/hdsemg_force_grid.toml` is one) names its ``recording`` (an OT
BioLab+ export, `read_otb`, from the working directory) and ``target`` (the auxiliary channel
predicted); its tables, each over the defaults of `emg_lens.studies.regression.spec`, are
``[windows]`` (`contraction_windows`' keywords, in samples at the file's rate: a token holds
``window / bin`` envelope bins), ``[model]`` (a TinyMyo, one token per electrode, its regression
head), ``[train]`` (`finetune_regression` from a fresh encoder, MSE loss; ``study run --epochs``
overrides ``epochs``), ``[[interventions]]`` (each ``edges`` set is cut in every layer) and
``[stats]`` (``correction``, ``"holm"`` or ``"bonferroni"`` over the cuts that cut an edge, and
the bootstrap's ``seed``).

The independent unit is the held-out block, not the window: windows overlap and the force
changes slowly, so each cut is compared with the unmasked model on the blocks' MSEs
(`emg_lens.studies.regression.cuts.cut_table`: ΔMSE with a bootstrap and a t interval over blocks,
the exact sign-flip p over blocks, the correction over the cuts).

The store (`emg_lens.studies.store.CellStore`, one subject: the contraction) keeps the
trained model (its checkpoint under ``model/`` and a cell with its digest, reused while the
data, the ``[model]`` and ``[train]`` tables and the code are unchanged), the baselines (a
mean predictor and a ridge regression on each channel's RMS), and one cell per cut: its
blocks' MSEs, reused only with the same model, data and code digests and edge set. A run
killed at any point recomputes only what is missing. The statistics are computed from the
cells, so ``[stats]`` and ``description`` are not part of the study's fingerprint.

Outputs: ``summary.csv`` (one row per cut, `emg_lens.studies.regression.cuts.CUT_COLUMNS`),
``blocks.csv`` (each block's MSE under each condition), ``baselines.csv`` and a ``cuts``
figure (ΔMSE with its intervals).

The package is laid out like the other kinds': `spec` (`RegressionSpec`: the file's tables),
`cuts` (a model's block errors with and without a cut, and the table comparing them; also
for a model in memory, `regression_cuts`), `runner` (`run_regression_study`, its check and
the kind, `KIND`) and `result` (`RegressionStudyResult`: its tables and figure).
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
