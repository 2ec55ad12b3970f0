"""Statistics of a study, as the IsoNet paper reports them.

For each condition the per-subject metric under the mask is compared with the per-subject
baseline: ``delta_pct = 100 * (mean_masked - mean_baseline) / mean_baseline``, a two-sided
Mann–Whitney U test (the paper's; ``wilcoxon``, the paired signed-rank test, is offered because
the two samples come from the same subjects), and a multiple-comparison correction over the
comparisons of one family (the paper's: all comparisons of one layer mode): Bonferroni
``min(1, p * m)`` or Holm's step-down.

>>> round(delta_pct(0.636, 0.914), 1)
-30.4
>>> stars(0.00005), stars(0.0005), stars(0.005), stars(0.03), stars(0.2)
('****', '***', '**', '*', 'ns')
>>> correct([0.01, 0.04, 0.03], "bonferroni")
[0.03, 0.12, 0.09]
>>> [round(p, 2) for p in correct([0.01, 0.04, 0.03], "holm")]
[0.03, 0.06, 0.06]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

from emg_lens.errors import SpecError

__all__ = ["CORRECTIONS", "TESTS", "compare", "correct", "delta_pct", "stars"]

TESTS = ("mannwhitneyu", "wilcoxon")
CORRECTIONS = ("bonferroni", "holm", "none")
STAR_LEVELS = ((1e-4, "****"), (1e-3, "***"), (1e-2, "**"), (0.05, "*"))


def delta_pct(masked: float, baseline: float) -> float:
    """Relative change of the mean in percent: ``100 * (masked - baseline) / baseline``."""
    if baseline == 0:
        return float("nan")
    return 100.0 * (masked - baseline) / baseline


def stars(p: float) -> str:
    """``****`` < 1e-4, ``***`` < 1e-3, ``**`` < 1e-2, ``*`` < 0.05, else ``ns``."""
    if not np.isfinite(p):
        return "ns"
    for threshold, mark in STAR_LEVELS:
        if p < threshold:
            return mark
    return "ns"


def compare(
    masked: Sequence[float], baseline: Sequence[float], test: str = "mannwhitneyu"
) -> tuple[float, float]:
    """``(statistic, p)`` of a two-sided test between per-subject values.

    >>> compare([0.5, 0.6, 0.55], [0.9, 0.95, 0.92])
    (0.0, 0.1)
    """
    masked, baseline = np.asarray(masked, float), np.asarray(baseline, float)
    if test == "mannwhitneyu":
        res = sps.mannwhitneyu(masked, baseline, alternative="two-sided")
    elif test == "wilcoxon":
        if len(masked) != len(baseline):
            raise SpecError("stats.test = 'wilcoxon' needs one masked value per baseline value")
        if np.allclose(masked, baseline):
            return 0.0, 1.0  # no differences at all: scipy would refuse
        res = sps.wilcoxon(masked, baseline, alternative="two-sided")
    else:
        raise SpecError(f"stats.test must be one of {TESTS}, got {test!r}")
    return float(res.statistic), float(res.pvalue)


def correct(pvalues: Sequence[float], method: str = "bonferroni") -> list[float]:
    """Family-wise corrected p-values (NaNs are left out of the family and stay NaN)."""
    p = np.asarray(pvalues, float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    m = len(valid)
    if method == "none":
        out[valid] = p[valid]
    elif method == "bonferroni":
        out[valid] = np.minimum(1.0, p[valid] * m)
    elif method == "holm":
        order = valid[np.argsort(p[valid], kind="stable")]
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * p[i]))
            out[i] = running
    else:
        raise SpecError(f"stats.correction must be one of {CORRECTIONS}, got {method!r}")
    return [float(x) for x in out]
