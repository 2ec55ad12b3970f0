"""Statistics of a study, as the IsoNet paper reports them: per condition, the change of the
per-subject metric against the baseline (`delta_pct`), a two-sided test (`TESTS`: the paper's
Mann–Whitney U; paired by subject, Wilcoxon's signed-rank test, exact with ties or zeros, and
the exact sign-flip test), an effect size (`rank_biserial`), an interval over subjects
(`delta_t_intervals`) and a correction over one family of comparisons (`correct`). Claims are
tested paired (`PAIRED`); the rules: docs/concepts.md, "Statistics".

>>> round(delta_pct(0.636, 0.914), 1)
-30.4
>>> stars(0.00005), stars(0.0005), stars(0.005), stars(0.03), stars(0.2)
('****', '***', '**', '*', 'ns')
>>> correct([0.01, 0.04, 0.03], "bonferroni")
[0.03, 0.12, 0.09]
>>> [round(p, 2) for p in correct([0.01, 0.04, 0.03], "holm")]
[0.03, 0.06, 0.06]
>>> format_p(0.0078125), format_p(3.1e-07), format_p(0.0), format_p(1.0)
('0.00781', '3.1e-07', '< 1e-16', '1')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from jaxtyping import Float, Real
from numpy.typing import ArrayLike
from scipy import stats as sps

from emg_lens.errors import (
    ArgumentError,
    EmgLensError,
    InputShapeError,
    SpecError,
    check_choice,
    check_number,
    describe,
)

Values = Sequence[float] | Real[np.ndarray, " _"]
"""Numbers a statistic reads with ``np.asarray``: a sequence, or a 1-D array of any length."""

P_FLOOR = 1e-16
"""Below it a p underflowed (a double's tail has no digits left) and prints as ``< 1e-16``."""


def format_p(p: float, digits: int = 3, name: str = "") -> str:
    """A p-value as every table and console prints it: ``digits`` significant digits (Python's
    ``g``), never ``0`` (the bound below `P_FLOOR`), ``n/a`` for NaN; with a ``name``, as a
    sentence says it.

    >>> format_p(0.000311), format_p(2.2e-5, 2), format_p(1e-300), format_p(float("nan"))
    ('0.000311', '2.2e-05', '< 1e-16', 'n/a')
    >>> format_p(0.0078125, 2, "p_corr"), format_p(0.0, 2, "p")
    ('p_corr = 0.0078', 'p < 1e-16')
    >>> format_p(0.0496, 2), format_p(0.000999951)  # not "0.05" and "0.001": they are below
    ('0.0496', '0.00099995')
    """
    p = float(p)
    if not np.isfinite(p):
        text = "n/a"
    elif p < P_FLOOR:
        text = f"< {P_FLOOR:.0e}"
    else:
        text = f"{p:.{digits}g}"
        # never rounded up onto a star's threshold it lies below: more digits instead
        while float(text) in _THRESHOLDS and p < float(text) and digits < 12:
            digits += 1
            text = f"{p:.{digits}g}"
    if not name:
        return text
    return f"{name} {text}" if text.startswith("<") else f"{name} = {text}"


TESTS = ("mannwhitneyu", "wilcoxon", "permutation")
PAIRED_TESTS = ("wilcoxon", "permutation")  # one masked value per baseline value, by subject
PAIRED = "paired"  # claims' default: the exact sign-flip test up to EXACT_MAX_N, Wilcoxon above
CLAIMS_TESTS = (PAIRED, *TESTS)
EXACT_MAX_N = 12  # the permutation test enumerates all 2**n sign patterns up to here
PERMUTATIONS = 10_000  # and draws this many above (seeded: a rerun writes the same p)
PERMUTATION_SEED = 0
TEST_NAMES = {
    "mannwhitneyu": "two-sided Mann–Whitney U",
    "wilcoxon": "two-sided Wilcoxon signed-rank (paired by subject)",
    "permutation": "two-sided sign-flip permutation test of the mean paired difference",
    PAIRED: (
        "the exact sign-flip test over subjects' paired differences (all 2^n relabellings) up "
        f"to {EXACT_MAX_N} subjects, Wilcoxon signed-rank above"
    ),
}
"""Each test in words, as summaries and consoles name it."""
CORRECTIONS = ("bonferroni", "holm", "none")
STAR_LEVELS = ((1e-4, "****"), (1e-3, "***"), (1e-2, "**"), (0.05, "*"))
_THRESHOLDS = frozenset(threshold for threshold, _ in STAR_LEVELS)
ALPHA = 0.05  # the weakest star
KEEP_MIN_SUBJECTS = 8
"""The fewest subjects from which an absence of change (a keep holds, a drop fails) is concluded
when they all changed alike: with n subjects all unchanged, the share of subjects a cut changes
is bounded (one-sided 95 %) only by ``1 − 0.05^(1/n)``, below a third from 8 on
(docs/DESIGN.md §16)."""
SKEW_FLOOR = 5.0
"""The least skewness a claim's interval assumes of its subjects' changes, on each side
(`skew_t_interval`'s ``skew_floor``): cuts' losses lean left and a few subjects rarely show it;
chosen by measurement, with its price in power (docs/DESIGN.md §18, docs/trust.md)."""


def paired_test(n: int) -> str:
    """The test `PAIRED` stands for with ``n`` subjects: ``"permutation"`` (the exact
    sign-flip test, all ``2**n`` relabellings) up to `EXACT_MAX_N`, ``"wilcoxon"`` above.

    >>> paired_test(8), paired_test(13)
    ('permutation', 'wilcoxon')
    """
    return "permutation" if n <= EXACT_MAX_N else "wilcoxon"


def _resolve(test: str, n: int) -> str:
    """``test`` with `PAIRED` replaced by the test it stands for with ``n`` subjects."""
    return paired_test(n) if test == PAIRED else test


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


def compare(masked: Values, baseline: Values, test: str = "mannwhitneyu") -> tuple[float, float]:
    """``(statistic, p)`` of a two-sided test between per-subject values.

    >>> compare([0.5, 0.6, 0.55], [0.9, 0.95, 0.92])
    (0.0, 0.1)
    """
    check_choice(test, CLAIMS_TESTS, "stats.test", SpecError)  # *_rows trust their callers
    U, p = compare_rows(_per_subject(masked, "compare(masked)")[None], baseline, test)
    return float(U[0]), float(p[0])


def _per_subject(values: Any, what: str) -> np.ndarray:
    """``values`` as a 1-D float array, or an `ArgumentError` naming ``what`` and what it got
    (an `InputShapeError` for an infinity, `finite_or_missing`)."""
    try:
        array = np.asarray(values, float)
    except (TypeError, ValueError):
        array = None
    if array is None or array.ndim != 1:
        got = describe(values) if hasattr(values, "shape") else repr(values)
        raise ArgumentError(f"{what} must be one number per subject (1-D), got {got}")
    return finite_or_missing(array, what)


def one_baseline_row_each(
    subjects: Sequence[Any], values: Values, what: str, error: type[EmgLensError]
) -> None:
    """Nothing when each subject holds one baseline row, else ``error`` naming ``what``, the
    first subject held twice and its values.

    >>> one_baseline_row_each([1, 2, 2], [0.8, 0.9, 0.1], "summarize", ArgumentError)
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: summarize: subject 2 holds 2 baseline rows (values 0.9, \
0.1); a baseline has one row per subject
    """
    seen: dict[Any, list[float]] = {}
    for subject, value in zip(subjects, values):
        seen.setdefault(subject, []).append(float(value))
    for subject, held in seen.items():
        if len(held) > 1:
            listed = ", ".join(f"{v:.3g}" for v in held)
            rows = f"{len(held)} baseline rows (values {listed})"
            raise error(
                f"{what}: subject {subject} holds {rows}; a baseline has one row per subject"
            )


def finite_or_missing(values: np.ndarray, what: str) -> np.ndarray:
    """``values``, or an `InputShapeError` naming ``what`` and where it holds ±inf: NaN is a
    missing value (left out), but an infinity is no value a subject can have.

    >>> finite_or_missing(np.array([1.0, np.inf]), "tost(values)")
    Traceback (most recent call last):
    ...
    emg_lens.errors.InputShapeError: tost(values) holds inf at index 1: accepted are finite \
numbers, or NaN for a missing value (left out)
    """
    infinite = np.isinf(values)
    if infinite.any():
        at = np.unravel_index(int(np.flatnonzero(infinite.ravel())[0]), values.shape)
        index = at[0] if len(at) == 1 else tuple(int(i) for i in at)
        accepted = "finite numbers, or NaN for a missing value (left out)"
        raise InputShapeError(
            f"{what} holds {values[at]} at index {index}: accepted are {accepted}"
        )
    return values


def compare_rows(
    masked: Float[np.ndarray, "rows n_masked"],
    baseline: Values,
    test: str = "mannwhitneyu",
) -> tuple[Float[np.ndarray, " rows"], Float[np.ndarray, " rows"]]:
    """`compare` for each row of ``masked`` against one baseline: ``(statistics, p)``, each
    row's numbers exactly what `compare` gives it, in a few vectorised scipy calls.

    scipy picks the Mann–Whitney method (exact or asymptotic) for a whole call from whether
    *any* row has ties, so rows are tested in groups of equal tie status. A row with a NaN
    gets NaN, as scipy's ``nan_policy="propagate"`` gives it.

    >>> U, p = compare_rows(np.array([[0.5, 0.6, 0.55], [0.9, 0.95, 0.9]]), [0.9, 0.95, 0.92])
    >>> U.tolist(), [round(float(x), 3) for x in p]  # row 2 has ties: the asymptotic p
    ([0.0, 3.5], [0.1, 0.814])
    >>> (float(U[1]), float(p[1])) == compare([0.9, 0.95, 0.9], [0.9, 0.95, 0.92])
    True
    """
    masked = finite_or_missing(np.atleast_2d(np.asarray(masked, float)), "compare(masked)")
    baseline = _per_subject(baseline, "compare(baseline)")
    test = _resolve(test, masked.shape[1])
    if test in PAIRED_TESTS:  # the one check of both paired tests' inputs
        _check_paired(masked, baseline, f"stats.test = {test!r}")
    U, p = np.full(len(masked), np.nan), np.full(len(masked), np.nan)
    if test == "wilcoxon":
        for i, row in enumerate(masked):
            U[i], p[i] = _wilcoxon(row, baseline)
        return U, p
    if test == "permutation":
        return _permutation(masked, baseline)
    finite = np.isfinite(masked).all(1) & np.isfinite(baseline).all()
    both = np.concatenate([masked, np.broadcast_to(baseline, (len(masked), len(baseline)))], 1)
    both = np.sort(both, axis=1)
    tied = (np.diff(both, axis=1) == 0).any(1)
    # Every value equal (a mask that changed nothing): no evidence of a difference. scipy's
    # asymptotic z is 0/0 there, which scipy 1.17 reports as p = 1 and later versions as NaN;
    # a NaN would also drop the condition from its correction family. U is n1 n2 / 2.
    constant = finite & (both[:, 0] == both[:, -1])
    U[constant], p[constant] = masked.shape[1] * len(baseline) / 2, 1.0
    varied = finite & ~constant
    for rows in (np.flatnonzero(varied & tied), np.flatnonzero(varied & ~tied)):
        if len(rows):
            res = sps.mannwhitneyu(masked[rows], baseline[None], alternative="two-sided", axis=1)
            U[rows], p[rows] = res.statistic, res.pvalue
    return U, p


def _check_paired(masked: np.ndarray, baseline: np.ndarray, what: str) -> None:
    if masked.shape[-1] != len(baseline):
        got = f"got {masked.shape[-1]} and {len(baseline)}"
        raise SpecError(f"{what} needs one masked value per subject's baseline value, {got}")


def sign_flip_p(differences: ArrayLike) -> Float[np.ndarray, " rows"]:
    """The two-sided sign-flip permutation p of the mean of each row of paired ``differences``
    (one per subject, or per held-out block): exact over all ``2**n`` sign patterns up to
    `EXACT_MAX_N` (never below ``2 / 2**n``), else a seeded Monte Carlo draw of `PERMUTATIONS`
    patterns (TransformerLens's ``sign_flip_permutation_pvalue``); NaN for a row with a NaN.

    >>> sign_flip_p([[1.0, 2.0, 3.0], [1.0, -1.0, 0.5]]).round(3).tolist()
    [0.25, 1.0]
    """
    import torch
    from transformer_lens.utilities.statistics import (
        derive_generator,
        sign_flip_permutation_pvalue,
    )

    d = np.atleast_2d(np.asarray(differences, np.float64))
    p = np.full(len(d), np.nan)
    finite = np.isfinite(d).all(1)
    if finite.any():
        p[finite] = sign_flip_permutation_pvalue(
            torch.as_tensor(d[finite], dtype=torch.float64),
            n_permutations=PERMUTATIONS,
            generator=derive_generator(PERMUTATION_SEED),
            exact_max_n=EXACT_MAX_N,
        ).numpy()
    return p


def _permutation(
    masked: Float[np.ndarray, "rows n"], baseline: Float[np.ndarray, " n"]
) -> tuple[Float[np.ndarray, " rows"], Float[np.ndarray, " rows"]]:
    """Mean paired difference and the two-sided sign-flip permutation p of each row (NaN for
    a row with a NaN)."""
    d = masked - baseline[None]
    mean = np.full(len(d), np.nan)
    finite = np.isfinite(d).all(1)
    mean[finite] = d[finite].mean(1)
    return mean, sign_flip_p(d)


def _signed_rank_p(nonzero: np.ndarray) -> tuple[float, float]:
    """The exact two-sided Wilcoxon signed-rank test of ``nonzero`` differences with tied
    magnitudes: the null distribution of the positive ranks' sum over all ``2**n`` sign
    patterns, built over doubled midranks one difference at a time (``n · Σ ranks`` steps)."""
    doubled = np.rint(2 * sps.rankdata(np.abs(nonzero))).astype(int)
    null = np.zeros(int(doubled.sum()) + 1)
    null[0] = 1.0
    for r in doubled:  # each difference's sign adds its rank to the sum, or not, half each
        null[r:] = (null[r:] + null[:-r]) / 2
        null[:r] /= 2
    t = int(doubled[nonzero > 0].sum())
    tails = min(null[: t + 1].sum(), null[t:].sum())
    return min(t, int(doubled.sum()) - t) / 2, float(min(1.0, 2 * tails))


def _wilcoxon(masked: np.ndarray, baseline: np.ndarray) -> tuple[float, float]:
    if np.allclose(masked, baseline):
        return 0.0, 1.0  # no change beyond float rounding (a cut's other kernel): none at all
    d = masked - baseline
    nonzero = d[d != 0]  # zero_method="wilcox": the test is on the nonzero differences
    if len(nonzero) == 1:  # its two signs are equally likely: the exact p is 1 (scipy raises)
        return 0.0, 1.0
    if len(nonzero) == len(d) and len(np.unique(np.abs(nonzero))) == len(d):
        res = sps.wilcoxon(masked, baseline, alternative="two-sided")  # exact up to 50 pairs
        return float(res.statistic), float(res.pvalue)
    # Zeros or tied magnitudes: scipy's "auto" takes its normal approximation from 14 pairs
    # on (zeros counted), which on a few nonzero differences goes below their exact p (5 falls
    # among 14 subjects: 0.043 against 0.0625); the exact distribution of their signs instead
    return _signed_rank_p(nonzero)


def correct(pvalues: Sequence[float], method: str = "bonferroni") -> list[float]:
    """Family-wise corrected p-values (NaNs are left out of the family and stay NaN); a value
    outside [0, 1] is no p-value and is refused (`InputShapeError`)."""
    p = np.asarray(pvalues, float)
    outside = np.flatnonzero(~np.isnan(p) & ~((p >= 0) & (p <= 1)))
    if len(outside):
        i = int(outside[0])
        accepted = "numbers in [0, 1], or NaN for a test without one (left out of the family)"
        raise InputShapeError(
            f"correct(pvalues)[{i}] = {p[i]} is no p-value: accepted are {accepted}"
        )
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


def rank_biserial(masked: Values, baseline: Values, test: str = "mannwhitneyu") -> float:
    """Effect size of ``test`` in [-1, 1], **negative when the masked values are lower** (a
    drop), positive for a rise, 0 for no tendency; NaN pairs/values are left out.

    ``mannwhitneyu``: ``P(masked > baseline) - P(masked < baseline)`` over all pairs, ties
    counting half; paired tests: the matched-pairs ``(T+ - T-) / (T+ + T-)`` over the rank sums
    of the nonzero differences ``masked - baseline``.

    >>> rank_biserial([0.5, 0.6], [0.9, 0.95])  # every masked value below every baseline
    -1.0
    >>> rank_biserial([0.5, 0.92], [0.9, 0.95])  # pairs: 1 above, 3 below
    -0.5
    >>> # d = -.1, +.02, -.2: ranks 2, 1, 3, so T+ = 1, T- = 5
    >>> round(rank_biserial([0.8, 0.97, 0.5], [0.9, 0.95, 0.7], "wilcoxon"), 4)
    -0.6667
    """
    check_choice(test, CLAIMS_TESTS, "stats.test", SpecError)
    return float(rank_biserial_rows(np.asarray(masked, float)[None], baseline, test)[0])


def rank_biserial_rows(
    masked: Float[np.ndarray, "rows n_masked"],
    baseline: Sequence[float] | Float[np.ndarray, " n_baseline"],
    test: str = "mannwhitneyu",
) -> Float[np.ndarray, " rows"]:
    """`rank_biserial` of each row of ``masked`` against one baseline, each row's number
    exactly what `rank_biserial` gives it (Mann–Whitney's pairs counted for every row at once).

    >>> rank_biserial_rows(np.array([[0.5, 0.6], [0.5, 0.92]]), [0.9, 0.95]).tolist()
    [-1.0, -0.5]
    """
    rows, base = np.atleast_2d(np.asarray(masked, float)), np.asarray(baseline, float)
    test = _resolve(test, rows.shape[1])
    if test in PAIRED_TESTS:
        _check_paired(rows, base, f"stats.test = {test!r}")
        paired = np.zeros(len(rows))  # 0 where no difference is left
        for i, d in enumerate(rows - base):
            d = d[np.isfinite(d) & (d != 0)]
            if len(d):
                ranks = sps.rankdata(np.abs(d))
                paired[i] = (ranks[d > 0].sum() - ranks[d < 0].sum()) / ranks.sum()
        return paired
    # NaN or inf (left out) compare neither above nor equal
    rows = np.where(np.isfinite(rows), rows, np.nan)[:, :, None]
    base = base[np.isfinite(base)][None, None, :]
    n_pairs = np.isfinite(rows).sum((1, 2)) * base.size
    above = (rows > base).sum((1, 2)) + 0.5 * (rows == base).sum((1, 2))
    u_baseline = n_pairs - above  # the baseline's U, from the masked sample's
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pairs > 0, 1 - 2 * u_baseline / n_pairs, np.nan)


def clopper_pearson(
    successes: Any, trials: Any, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided Clopper-Pearson interval of success rates (``successes`` of
    ``trials``, arrays or numbers): the beta quantiles at ``(1 - confidence) / 2`` from each
    side, 0 and 1 at the ends; NaN where there was no trial.

    >>> low, high = clopper_pearson([0, 3], [6, 10])
    >>> [round(float(x), 3) for x in low], [round(float(x), 3) for x in high]
    ([0.0, 0.067], [0.459, 0.652])
    """
    k, n = np.asarray(successes, float), np.asarray(trials, float)
    tail = (1 - confidence) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k > 0, sps.beta.ppf(tail, k, n - k + 1), 0.0)
        high = np.where(k < n, sps.beta.ppf(1 - tail, k + 1, n - k), 1.0)
    empty = n <= 0
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def rows_and_baseline(
    masked: Any, baseline: Any, level: float, level_name: str, interval: str
) -> tuple[np.ndarray, np.ndarray]:
    """``masked`` as rows of per-subject values and ``baseline`` as one value per subject,
    for an interval of the change at ``level``; a level outside (0, 1) or rows that do not
    match the baseline is a `SpecError` (``level_name``, ``interval``: what it names)."""
    check_number(level, level_name, "in (0, 1)", lambda v: 0 < v < 1, SpecError)
    masked = finite_or_missing(np.atleast_2d(np.asarray(masked, float)), "compare(masked)")
    baseline = _per_subject(baseline, "compare(baseline)")
    _check_paired(masked, baseline, interval)
    return masked, baseline


def delta_t_intervals(
    masked: Float[np.ndarray, "rows n"],
    baseline: Float[np.ndarray, " n"],
    *,
    level: float = 0.95,
    relative: bool = True,
) -> tuple[Float[np.ndarray, " rows"], Float[np.ndarray, " rows"]]:
    """The interval over subjects of each row's change of the mean against one baseline
    (column ``i`` is subject ``i`` in both: paired), by `skew_t_interval` (Student's and
    Johnson's skew-corrected t spanned). With ``relative``, of `delta_pct` (the ratio of means)
    by its linearisation (each subject's ``L_i = (m_i − (1 + r) b_i) / B``, ``r = M / B − 1``),
    never below −100 % where no value is negative; without, of the paired differences ``M − B``.
    Subjects with a NaN are left out; fewer than 2 subjects, or a zero baseline mean, give NaN.
    Coverage at 6–20 subjects: docs/trust.md; a bootstrap's at 3–8: docs/DESIGN.md §16.

    >>> lows, highs = delta_t_intervals(np.array([[0.5, 0.6, 0.55, 0.58]]),
    ...                                 np.array([0.9, 0.95, 0.92, 0.91]))
    >>> round(float(lows[0]), 1), round(delta_pct(0.5575, 0.92), 1), round(float(highs[0]), 1)
    (-61.0, -39.4, -33.5)
    >>> delta_t_intervals(np.array([[0.0, 0.0, 0.9]]), np.array([0.9, 0.9, 0.9]))[0].tolist()
    [-100.0]
    """
    masked, baseline = rows_and_baseline(
        masked, baseline, level, "an interval's level", "an interval of a change"
    )
    lows, highs = np.full(len(masked), np.nan), np.full(len(masked), np.nan)
    for row, values in enumerate(masked):
        keep = np.isfinite(values) & np.isfinite(baseline)
        m, b = values[keep], baseline[keep]
        if len(m) < 2 or (relative and b.mean() == 0):
            continue
        if relative:
            r = m.mean() / b.mean() - 1
            pseudo = 100.0 * (r + (m - (1 + r) * b) / b.mean())
        else:
            pseudo = m - b
        lows[row], highs[row] = skew_t_interval(pseudo, level, third=0.0)
        if relative and min(m.min(), b.min()) >= 0:  # the high end is Student's or above
            lows[row] = max(lows[row], -100.0)
    return lows, highs


def t_interval(values: Values, level: float = 0.90, sd_floor: float = 0.0) -> tuple[float, float]:
    """The two-sided Student-t interval of the mean of ``values`` at ``level`` (NaNs left out,
    ±inf refused; ``(nan, nan)`` below 2 values), the sd never below ``sd_floor`` (values that
    agree more closely than their sampling error agree by the discreteness of what they count).
    At 0.90 its ends are the two one-sided 95 % bounds `tost` tests against a margin.

    >>> low, high = t_interval([-1.0, 0.0, 1.0, 2.0])
    >>> round(low, 3), round(high, 3)  # 0.5 ± 2.353 · 1.291 / 2
    (-1.019, 2.019)
    >>> [round(v, 3) for v in t_interval([0.0, 0.0, 0.0, 0.0], sd_floor=1.0)]  # ± 2.353 / 2
    [-1.177, 1.177]
    """
    check_number(level, "an interval's level", "in (0, 1)", lambda v: 0 < v < 1, SpecError)
    x, sd, _ = _mean_sd_skews(values, sd_floor)
    if len(x) < 2:
        return float("nan"), float("nan")
    mean, se = float(x.mean()), sd / float(np.sqrt(len(x)))
    half = float(sps.t.ppf((1 + level) / 2, len(x) - 1)) * se
    return mean - half, mean + half


def _hall_g_inverse(u: float, skew: float, n: int) -> float:
    """The inverse at ``u`` of Hall's (1992) transformation ``g(θ) = θ + γ/(6n) + γθ²/3 +
    γ²θ³/27`` (Johnson's 1978 correction of the t statistic, made monotone)."""
    if abs(skew) < 1e-12:
        return u - skew / (6 * n)
    return 3.0 / skew * (float(np.cbrt(1 + skew * (u - skew / (6 * n)))) - 1.0)


def _hall_g(theta: float, skew: float, n: int) -> float:
    return theta + skew / (6 * n) + skew * theta**2 / 3 + skew**2 * theta**3 / 27


def _mean_sd_skews(
    values: Values, sd_floor: float, third: float | None = None, what: str = "t_interval"
) -> tuple[np.ndarray, float, list[float]]:
    """The finite ``values`` (±inf refused naming ``what``), their sd (at least ``sd_floor``)
    and their skewnesses: the sample's (0 below 3 values or at sd 0) and, with ``third`` (a
    third cumulant known from elsewhere), ``third`` over the sd cubed."""
    x = finite_or_missing(np.asarray(values, float), f"{what}(values)")
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 2:
        return x, float("nan"), [0.0]
    sd = max(float(x.std(ddof=1)), sd_floor)
    if sd == 0:
        return x, sd, [0.0]
    sample = float(((x - x.mean()) ** 3).sum()) * n / ((n - 1) * (n - 2)) if n >= 3 else 0.0
    return x, sd, [sample / sd**3] + ([] if third is None else [third / sd**3])


def _floor_quantile(t: float, skew: float, n: int) -> float:
    """The one-sided quantile of a mean's studentised value where the values lean by ``skew``
    (first-order Cornish–Fisher)."""
    return t + skew * (2 * t**2 + 1) / (6 * np.sqrt(n))


def _floor_p(z: float, skew: float, n: int) -> float:
    """The one-sided p of a studentised distance ``z`` (``√n (mean − limit) / sd``) under
    `_floor_quantile`'s bound; at least 0.5 where the point estimate does not clear it."""
    a = skew / (6 * np.sqrt(n))
    if z <= a:
        return max(0.5, float(sps.t.sf(z, n - 1)))
    t = z if a == 0 else (-1 + np.sqrt(1 - 8 * a * (a - z))) / (4 * a)
    return float(sps.t.sf(t, n - 1))


def skew_t_interval(
    values: Values,
    level: float = 0.90,
    sd_floor: float = 0.0,
    *,
    third: float | None = None,
    skew_floor: float = 0.0,
) -> tuple[float, float]:
    """The two-sided interval of the mean of ``values`` at ``level`` that corrects Student's t
    for the values' skewness: Johnson's (1978) modified t, in Hall's (1992) monotone form,
    inverted (``mean − sd · g⁻¹(±t / √n)``, ``g`` `_hall_g`); `t_interval`'s below 3 values.
    Per-subject changes of an accuracy count are skewed, and Student's one-sided bounds then
    clear a margin too often (docs/trust.md). ``sd_floor`` as in `t_interval`. ``third``: a
    second estimate of the values' third cumulant (a claim's, from each subject's trials:
    `emg_lens.stats.units.subject_changes`); the interval then spans both
    corrections, each end the more cautious. ``skew_floor``: a skewness of at least this much
    assumed on each side (`_floor_quantile`; claims pass `SKEW_FLOOR`).

    >>> low, high = skew_t_interval([-1.0, 0.0, 1.0, 2.0])  # symmetric: Student's interval
    >>> (round(low, 3), round(high, 3)) == tuple(round(v, 3) for v in t_interval(
    ...     [-1.0, 0.0, 1.0, 2.0]))
    True
    >>> low, high = skew_t_interval([0.0, -1.0, 0.5, -9.0, 0.2, -0.4])  # a long left tail
    >>> s_low, s_high = t_interval([0.0, -1.0, 0.5, -9.0, 0.2, -0.4])
    >>> bool(low < s_low and high < s_high)  # the interval leans with the tail
    True
    >>> f_low, f_high = skew_t_interval([-1.0, 0.0, 1.0, 2.0], skew_floor=2.5)  # assumed skew
    >>> round(float(f_low), 3), round(float(f_high), 3)  # 0.5 ∓ (2.353 + 2.515) · 0.645
    (-2.643, 3.643)
    """
    check_number(level, "an interval's level", "in (0, 1)", lambda v: 0 < v < 1, SpecError)
    x, sd, skews = _mean_sd_skews(values, sd_floor, third, "skew_t_interval")
    if len(x) < 2:
        return float("nan"), float("nan")
    n, mean = len(x), float(x.mean())
    q = float(sps.t.ppf((1 + level) / 2, n - 1)) / np.sqrt(n)
    if sd == 0:
        return mean, mean
    low = min(mean - sd * _hall_g_inverse(q, g, n) for g in skews)
    high = max(mean - sd * _hall_g_inverse(-q, g, n) for g in skews)
    if not skew_floor:
        return low, high
    floor = _floor_quantile(q * np.sqrt(n), skew_floor, n) * sd / np.sqrt(n)
    return min(low, mean - floor), max(high, mean + floor)
