"""What a design of n subjects can conclude: the smallest p a cell can reach (`smallest_p`,
after a correction `corrected_floor`, the subjects it takes `subjects_needed`), and the
equivalence test by which a claim concludes an absence of change (`tost`: Schuirmann's two
one-sided tests, each Johnson's skewness-corrected t of `emg_lens.stats.compare`) with the
spread it tolerates (`tost_max_sd`).

>>> subjects_needed(30), round(tost([-1.0, 0.0, 1.0, 2.0], 3.0), 4)
(6, 0.0152)
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps

from emg_lens.errors import SpecError, check_choice
from emg_lens.stats.compare import (
    ALPHA,
    TESTS,
    Values,
    _floor_p,
    _floor_quantile,
    _hall_g,
    _mean_sd_skews,
    _resolve,
    compare,
    correct,
)


def smallest_p(n: int, test: str = "mannwhitneyu") -> float:
    """The smallest two-sided p-value ``test`` can give with ``n`` subjects: its p for perfect
    separation, by the same scipy call `compare` makes (for Mann–Whitney U the smaller of the
    distinct values' exact p and that of values tied within each condition, which scipy's
    tie-corrected normal approximation makes smaller).

    >>> round(smallest_p(6), 5), smallest_p(6, "wilcoxon")  # tied; 2 / 2**6
    (0.00126, 0.03125)
    >>> smallest_p(6, "permutation")  # the two all-one-sign patterns of 2**6
    0.03125
    >>> smallest_p(8, "paired")  # 2 / 2**8: the exact sign-flip test
    0.0078125
    """
    test = _resolve(test, n)
    check_choice(test, TESTS, "stats.test", SpecError)
    if n < 1:
        raise SpecError(f"smallest_p needs n >= 1 subjects, got {n}")
    baseline = np.arange(n, dtype=float) + 2.0 * n  # distinct, and all above the masked ones
    masked = np.arange(n, dtype=float) * (1 + 1 / (4 * n))  # distinct differences too
    p = compare(masked, baseline, test)[1]
    if test == "mannwhitneyu" and n > 1:
        p = min(p, compare(np.zeros(n), np.ones(n), test)[1])
    return p


def corrected_floor(n: int, m: int, test: str = "mannwhitneyu", correction: str = "bonferroni"):
    """The smallest corrected p a cell can reach: `smallest_p` after ``correction`` in a family
    of ``m`` comparisons (Bonferroni and Holm both multiply the smallest p by ``m``).

    >>> round(corrected_floor(8, 30), 4), round(corrected_floor(6, 30), 3)
    (0.0041, 0.038)
    """
    p = smallest_p(n, test)
    if correction == "none":
        return p
    correct([p], correction)  # refuses an unknown correction by name
    return min(1.0, p * max(m, 1))


def subjects_needed(
    m: int,
    test: str = "mannwhitneyu",
    correction: str = "bonferroni",
    alpha: float = ALPHA,
    max_n: int = 200,
) -> int | None:
    """The fewest subjects with which a cell can reach ``p_corr < alpha`` (None beyond
    ``max_n``).

    >>> subjects_needed(30), subjects_needed(30, "wilcoxon"), subjects_needed(1, "paired")
    (6, 11, 6)
    """
    for n in range(2, max_n + 1):
        if corrected_floor(n, m, test, correction) < alpha:
            return n
    return None


def tost(
    values: Values,
    bound: float,
    sd_floor: float = 0.0,
    *,
    skew_corrected: bool = True,
    third: float | None = None,
    skew_floor: float = 0.0,
) -> float:
    """Schuirmann's (1987) two one-sided tests that the mean of ``values`` lies within
    ``±bound``: the larger p of the one-sided tests of ``mean <= -bound`` and ``mean >=
    bound`` (NaNs left out, ±inf refused, the sd never below ``sd_floor``), each Johnson's
    skew-corrected t as `skew_t_interval` (``third``, ``skew_floor``), or Student's with
    ``skew_corrected=False``: p < 0.05 exactly when the matching interval at 0.90 lies inside
    ``(-bound, bound)``. NaN below 2 values; with no spread and no floor, 0 inside, 1 outside.

    >>> # Student's 90 % interval of these, [-1.019, 2.019]: inside ±3, past +2
    >>> round(tost([-1.0, 0.0, 1.0, 2.0], 3.0), 4), round(tost([-1.0, 0.0, 1.0, 2.0], 2.0), 4)
    (0.0152, 0.0514)
    >>> tost([0.0, 0.0], 5.0), round(tost([0.0, 0.0], 5.0, sd_floor=6.25), 3)  # 2 unchanged
    (0.0, 0.23)
    """
    if not bound > 0:
        raise SpecError(f"an equivalence bound must be > 0, got {bound!r}")
    x, sd, skews = _mean_sd_skews(values, sd_floor, third, "tost")
    if len(x) < 2:
        return float("nan")
    n, mean = len(x), float(x.mean())
    if sd == 0:
        return 0.0 if abs(mean) < bound else 1.0
    skews = skews if skew_corrected else [0.0]
    df, root = n - 1, np.sqrt(n)

    def p_of(g: float) -> float:
        lower = root * _hall_g((mean + bound) / sd, g, n)  # H0: mean <= -bound
        upper = root * _hall_g((mean - bound) / sd, g, n)  # H0: mean >= +bound
        return max(float(sps.t.sf(lower, df)), float(sps.t.cdf(upper, df)))

    floor = max(
        _floor_p(root * (mean + bound) / sd, skew_floor, n),
        _floor_p(root * (bound - mean) / sd, skew_floor, n),
    )
    return max(max(p_of(g) for g in skews), floor if skew_floor else 0.0)


def tost_max_sd(n: int, bound: float, skew_floor: float = 0.0) -> float:
    """The largest spread (standard deviation) ``n`` values may have for `tost` to show their
    mean within ``±bound`` at 5 %: ``bound · √n / t_{0.95, n - 1}``, reached when their mean
    is 0 (less the further it is from 0), and with ``skew_floor`` (the skewness `tost` assumes
    at least) ``t`` moved out as `skew_t_interval` moves it; 0 below 2 values (no t-test).

    >>> [round(tost_max_sd(n, 5.0), 2) for n in (1, 2, 3, 8)]  # a ±5 % margin
    [0.0, 1.12, 2.97, 7.46]
    >>> round(tost_max_sd(8, 5.0, skew_floor=5.0), 2)  # 5 · √8 / (1.895 + 2.409)
    3.29
    """
    if n < 2:
        return 0.0
    t = float(sps.t.ppf(1 - ALPHA, n - 1))
    return float(bound * np.sqrt(n) / _floor_quantile(t, skew_floor, n))
