"""The regression kind (``kind = "regression"``): edges cut in a regressor of one contraction's
force, tested over its held-out time blocks (`cuts`); resumable in the provenance-keyed store,
which keeps the trained model, the baselines and one cell per cut (``[stats]`` is not part of
the fingerprint: the statistics are computed from the cells). The study file and the outputs
(`RegressionStudyResult`): docs/guide/recordings.md.
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
