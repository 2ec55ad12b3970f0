"""Statistics that count the independent unit: trials, not windows (`emg_lens.data.trials`;
why, and how much the windows of a trial repeat each other: docs/DESIGN.md §15). Trials are
decided by the majority vote of their windows (`trial_votes`; a tie is not correct), intervals
resample whole trials (`cluster_bootstrap_ci`, `crossed_bootstrap_ci` for pairs of trials),
per-class intervals are exact over the class's trials (`class_trial_cis`; a bootstrap of so
few trials undercovers: docs/DESIGN.md §16), `design_effect` is Kish's ``1 + (m - 1) ICC``,
and `subject_changes` gives each subject's own change with its interval over its trials.

>>> pred = np.array([1, 1, 0, 0, 0, 2, 2, 1])
>>> y = np.array([1, 1, 1, 0, 0, 2, 2, 2])
>>> trials = np.array([0, 0, 0, 1, 1, 2, 2, 2])
>>> votes = trial_votes(pred, y, trials)
>>> votes.correct.tolist(), votes.label.tolist(), votes.windows.tolist()
([True, True, True], [1, 0, 2], [3, 2, 3])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from jaxtyping import Bool, Float, Int
from scipy import stats as sps

from emg_lens.errors import ArgumentError, check_number
from emg_lens.stats.compare import ALPHA, Values, clopper_pearson, rows_and_baseline

BOOTSTRAP_RESAMPLES = 2000
TRIAL_UNITS = ("repetition", "window", "given", "recording")
"""How windows group into trials: by ``(class, repetition)``, each window its own, by the
trial their source recorded for each, or by their recording (the last two: the data's
``meta["given_trials"]``, `emg_lens.data.trials`)."""
TRIAL_WINDOW_FIELDS = ("trial_class", "trial_windows", "trial_hits")
"""What `trial_counts` adds to a study's cell (one list entry per trial)."""
BOOTSTRAP_SEED = 0  # one fixed seed: a rerun of a study writes the same intervals
VOTE_BLOCK = 1 << 22  # vote counts held at once by `trial_votes` (32 MiB of int64)


@dataclass(frozen=True)
class TrialVotes:
    """One entry per vote, in order of trial number (a trial of several classes, such as a
    recording of two sleep stages, votes each class apart, in class order): ``correct`` (the
    majority vote of its windows is its true class; ``[condition, vote]`` for stacked
    predictions), ``label`` (its true class), ``windows`` (how many) and ``weight`` (its
    trial's share: 1 over the classes the trial holds, so each trial counts once)."""

    correct: Bool[np.ndarray, "*stack vote"]
    label: Int[np.ndarray, " vote"]
    windows: Int[np.ndarray, " vote"]
    weight: Float[np.ndarray, " vote"]

    @property
    def n(self) -> int:
        return len(self.label)

    def class_counts(self, n_classes: int) -> Float[np.ndarray, " n_classes"]:
        """Trials per class, each trial split evenly among its classes (what chance over
        trials is the largest share of)."""
        return np.bincount(self.label, self.weight, minlength=n_classes)


def _check_windows(y: np.ndarray, trials: np.ndarray, what: str) -> None:
    if y.ndim != 1 or trials.shape != y.shape:
        shapes = f"got shapes {y.shape} and {trials.shape}"
        raise ArgumentError(f"{what} and trials must be 1-D, one entry per window; {shapes}")
    if len(y) == 0:
        raise ArgumentError(f"no windows: {what} is empty")


def check_classes(values: Int[np.ndarray, "..."], n_classes: int, what: str) -> None:
    """Refuse class indices outside ``0 .. n_classes - 1`` (``what`` names them): a count per
    class has nowhere to put them.

    >>> check_classes(np.array([0, 3]), 3, "y")
    Traceback (most recent call last):
    emg_lens.errors.ArgumentError: y holds class 3, outside 0..2 (n_classes = 3)
    """
    values = np.asarray(values)
    if values.size and (values.min() < 0 or values.max() >= n_classes):
        bad = values.min() if values.min() < 0 else values.max()
        raise ArgumentError(
            f"{what} holds class {int(bad)}, outside 0..{n_classes - 1} (n_classes = {n_classes})"
        )


def trial_votes(
    pred: Int[np.ndarray, "*stack window"],
    y: Int[np.ndarray, " window"],
    trials: Int[np.ndarray, " window"],
) -> TrialVotes:
    """Each trial's majority vote over its windows' predicted classes (a tie is not correct);
    a trial of several classes votes each class apart (`TrialVotes`). ``pred`` may stack
    several conditions' predictions (``[condition, window]``): ``correct`` is then
    ``[condition, vote]``, each row what that condition alone gives.

    >>> trial_votes(np.array([0, 1]), np.array([0, 0]), np.array([0, 0])).correct.tolist()
    [False]
    >>> trial_votes(np.array([[0, 0], [0, 1]]), np.array([0, 0]), np.array([0, 0])).correct
    array([[ True],
           [False]])
    >>> votes = trial_votes(np.array([0, 0, 0]), np.array([0, 0, 1]), np.array([4, 4, 4]))
    >>> votes.correct.tolist(), votes.label.tolist(), votes.weight.tolist()
    ([True, False], [0, 1], [0.5, 0.5])
    """
    pred, y, trials = np.asarray(pred), np.asarray(y), np.asarray(trials)
    _check_windows(y, trials, "y")
    if pred.shape[-1:] != y.shape:
        raise ArgumentError(f"pred must have one class per window: shape {pred.shape} vs {y.shape}")
    n_classes = int(max(pred.max(), y.max())) + 1
    trial, label, of_trial = _votes(y, trials)
    n_trials, weight = len(label), 1.0 / np.bincount(of_trial)[of_trial]
    rows = pred.reshape(-1, len(y))
    correct = np.empty((len(rows), n_trials), bool)
    # votes [rows, vote, class], a block of rows at a time: bounded memory for many votes
    step = max(1, VOTE_BLOCK // (n_trials * n_classes))
    for start in range(0, len(rows), step):
        block = rows[start : start + step]
        cell = (np.arange(len(block))[:, None] * n_trials + trial) * n_classes + block
        votes = np.bincount(cell.ravel(), minlength=len(block) * n_trials * n_classes)
        votes = votes.reshape(len(block), n_trials, n_classes)
        true_votes = votes[:, np.arange(n_trials), label]
        votes[:, np.arange(n_trials), label] = -1
        correct[start : start + step] = true_votes > votes.max(2)
    windows = np.bincount(trial, minlength=n_trials)
    return TrialVotes(correct.reshape(*pred.shape[:-1], n_trials), label, windows, weight)


def _votes(y: np.ndarray, trials: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(each window's vote, each vote's class, each vote's trial, numbered 0, 1, ...): a vote
    per distinct ``(trial, class)``, in order of trial number, then class."""
    trial = np.unique(trials, return_inverse=True)[1].reshape(-1)
    k = int(y.max()) + 1  # one key per (trial, class): two 1-D uniques, not one over rows
    keys, vote = np.unique(trial * k + y, return_inverse=True)
    return vote.reshape(-1), (keys % k).astype(np.int64), keys // k


def _check_hits(hits: np.ndarray, level: float, *clusters: np.ndarray) -> None:
    """Refuse hits that are not one finite value per window of each of ``clusters``, or a
    ``level`` outside (0, 1): what both bootstrap intervals take."""
    for cluster in clusters:
        _check_windows(hits, cluster, "hits")
    if not np.isfinite(hits).all():
        raise ArgumentError("hits holds non-finite values; a share needs finite 0/1 values")
    check_number(level, "level", "between 0 and 1", lambda v: 0 < v < 1)


def _percentile_interval(shares: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` percentile interval of the resampled ``shares``."""
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(shares, [tail, 100 - tail])
    return float(low), float(high)


def cluster_bootstrap_ci(
    hits: Float[np.ndarray, " unit"],
    clusters: Int[np.ndarray, " unit"],
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """A seeded percentile interval of ``mean(hits)`` that resamples whole clusters (trials)
    with replacement; one cluster shows nothing: ``(0.0, 1.0)``.

    >>> hits = np.array([1, 1, 1, 1, 0, 0, 0, 0], float)
    >>> cluster_bootstrap_ci(hits, np.array([0, 0, 1, 1, 2, 2, 3, 3]))  # 4 trials: wide
    (0.0, 1.0)
    >>> lo, hi = cluster_bootstrap_ci(hits, np.arange(8))  # 8 independent units: narrower
    >>> 0.0 < lo < 0.5 < hi < 1.0
    True
    """
    hits, clusters = np.asarray(hits, np.float64), np.asarray(clusters)
    _check_hits(hits, level, clusters)
    _, cluster = np.unique(clusters, return_inverse=True)
    sums = np.bincount(cluster, weights=hits)
    sizes = np.bincount(cluster).astype(np.float64)
    if len(sums) == 1:
        return (0.0, 1.0)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(sums), size=(resamples, len(sums)))
    shares = sums[draws].sum(1) / sizes[draws].sum(1)
    return _percentile_interval(shares, level)


def crossed_bootstrap_ci(
    hits: Float[np.ndarray, " pair"],
    rows: Int[np.ndarray, " pair"],
    cols: Int[np.ndarray, " pair"],
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float]:
    """A percentile interval of ``mean(hits)`` over pairs that each belong to two clusters
    (``rows``: a base trial, ``cols``: a source trial), crossed: Owen's (2007) pigeonhole
    bootstrap, each pair weighed by the product of its two clusters' draw counts (it errs on
    the wide side). Seeded; fewer than two clusters of either kind give ``(0.0, 1.0)``.

    >>> hits = np.array([1, 1, 1, 0, 0, 0], float)
    >>> lo, hi = crossed_bootstrap_ci(hits, np.arange(6), np.arange(6))
    >>> lo < 0.5 < hi
    True
    >>> crossed_bootstrap_ci(hits, np.zeros(6, int), np.arange(6))  # one base trial
    (0.0, 1.0)
    """
    hits, rows, cols = np.asarray(hits, np.float64), np.asarray(rows), np.asarray(cols)
    _check_hits(hits, level, rows, cols)
    _, row = np.unique(rows, return_inverse=True)
    _, col = np.unique(cols, return_inverse=True)
    n_rows, n_cols = int(row.max()) + 1, int(col.max()) + 1
    if n_rows < 2 or n_cols < 2:
        return (0.0, 1.0)
    rng = np.random.default_rng(seed)
    shares = np.empty(resamples)
    for i in range(resamples):  # one pair of draws at a time: memory of one pair vector
        w = np.bincount(rng.integers(0, n_rows, n_rows), minlength=n_rows)[row]
        w = w * np.bincount(rng.integers(0, n_cols, n_cols), minlength=n_cols)[col]
        total = w.sum()
        shares[i] = (w * hits).sum() / total if total else np.nan
    shares = shares[np.isfinite(shares)]
    return _percentile_interval(shares, level)


def design_effect(
    hits: Float[np.ndarray, " window"], trials: Int[np.ndarray, " window"]
) -> tuple[float, float]:
    """``(icc, deff)``: the intra-trial correlation of ``hits`` (one-way ANOVA estimator,
    clipped at 0) and Kish's design effect ``1 + (m - 1) * icc`` with ``m`` the mean windows
    per trial; ``len(hits) / deff`` windows are worth that many independent ones. A constant
    ``hits`` has no correlation to estimate: ``(0.0, 1.0)``.

    >>> design_effect(np.array([1, 1, 1, 0, 0, 0], float), np.array([0, 0, 0, 1, 1, 1]))
    (1.0, 3.0)
    """
    return design_effects(np.asarray(hits, np.float64)[None], trials)[0]


def design_effects(
    hits: Float[np.ndarray, "stack window"], trials: Int[np.ndarray, " window"]
) -> list[tuple[float, float]]:
    """`design_effect` of each row of ``hits`` (several conditions' hits on the same windows),
    each exactly what `design_effect` gives the row alone (every sum runs along the row).

    >>> design_effects(np.array([[1, 1, 1, 0, 0, 0], [1, 0, 1, 0, 1, 0]], float),
    ...                np.array([0, 0, 0, 1, 1, 1]))
    [(1.0, 3.0), (0.0, 1.0)]
    """
    hits, trials = np.ascontiguousarray(hits, np.float64), np.asarray(trials)
    if hits.ndim != 2:
        raise ArgumentError(f"hits must be [rows, window], got shape {hits.shape}")
    _check_windows(hits[0] if len(hits) else hits.reshape(-1), trials, "hits")
    _, trial = np.unique(trials, return_inverse=True)
    rows, (k, n) = len(hits), (int(trial.max()) + 1, hits.shape[1])
    sizes = np.bincount(trial).astype(np.float64)
    if k < 2 or n == k:
        return [(0.0, 1.0)] * rows
    cell = (np.arange(rows)[:, None] * k + trial).ravel()
    sums = np.bincount(cell, weights=hits.ravel(), minlength=rows * k).reshape(rows, k)
    means = sums / sizes
    # each sum along a C-ordered row: numpy sums a row of a strided array in another order
    between = _row_sums(sizes * (means - hits.mean(1)[:, None]) ** 2) / (k - 1)
    within = _row_sums((hits - means[:, trial]) ** 2) / (n - k)
    m0 = (n - (sizes**2).sum() / n) / (k - 1)
    constant = hits.var(1) == 0
    return [
        (0.0, 1.0) if flat else _kish(float(b), float(w), m0, n / k)
        for flat, b, w in zip(constant, between, within)
    ]


def _row_sums(values: Float[np.ndarray, "rows n"]) -> Float[np.ndarray, " rows"]:
    return np.ascontiguousarray(values).sum(1)


def _kish(between: float, within: float, m0: float, m: float) -> tuple[float, float]:
    """``(icc, deff)`` from the one-way ANOVA's mean squares (``m0``: the adjusted trial size,
    ``m``: the mean trial size)."""
    icc = (between - within) / (between + (m0 - 1) * within) if between + within > 0 else 0.0
    icc = float(np.clip(icc, 0.0, 1.0))
    return (round(icc, 12), round(1 + (m - 1) * icc, 12))


def trial_counts(
    pred: Int[np.ndarray, " window"],
    y: Int[np.ndarray, " window"],
    trials: Int[np.ndarray, " window"],
) -> dict[str, list[int]]:
    """Per trial (per class of a trial of several, as `trial_votes` votes), in order of trial
    number, as JSON-able lists (what a study's cell stores beside its per-class counts):
    ``trial_class`` (its true class), ``trial_windows`` and ``trial_hits`` (windows whose
    predicted class is the true one).

    >>> trial_counts(np.array([1, 1, 0, 0]), np.array([1, 1, 1, 0]), np.array([4, 4, 4, 7]))
    {'trial_class': [1, 0], 'trial_windows': [3, 1], 'trial_hits': [2, 1]}
    """
    return stacked_trial_counts(np.asarray(pred)[None], y, trials)[0]


def stacked_trial_counts(
    pred: Int[np.ndarray, "stack window"],
    y: Int[np.ndarray, " window"],
    trials: Int[np.ndarray, " window"],
) -> list[dict[str, list[int]]]:
    """`trial_counts` of each row of ``pred`` (several conditions' predictions of the same
    windows), in one pass.

    >>> [c["trial_hits"] for c in stacked_trial_counts(np.array([[1, 1, 0, 0], [1, 0, 0, 1]]),
    ...     np.array([1, 1, 1, 0]), np.array([4, 4, 4, 7]))]
    [[2, 1], [1, 0]]
    """
    pred, y, trials = np.asarray(pred), np.asarray(y), np.asarray(trials)
    votes = trial_votes(pred, y, trials)  # a trial of two classes: a vote per class
    trial = _votes(y, trials)[0]
    cell = (np.arange(len(pred))[:, None] * votes.n + trial).ravel()
    hits = np.bincount(cell, weights=(pred == y).ravel(), minlength=len(pred) * votes.n)
    return [
        {
            "trial_class": votes.label.tolist(),
            "trial_windows": votes.windows.tolist(),
            "trial_hits": row.tolist(),
        }
        for row in hits.reshape(len(pred), votes.n).astype(np.int64)
    ]


def class_trial_cis(
    trial_class: Int[np.ndarray, " trial"] | Sequence[int],
    trial_windows: Int[np.ndarray, " trial"] | Sequence[int],
    trial_hits: Int[np.ndarray, " trial"] | Sequence[int],
    n_classes: int,
    level: float = 0.95,
) -> tuple[Float[np.ndarray, " n_classes"], Float[np.ndarray, " n_classes"], np.ndarray]:
    """``(low, high, trials)`` per class: the interval of the class's accuracy over its
    trials, and how many trials it has: Clopper–Pearson's for ``Σ a_t`` successes of ``T``
    trials, ``a_t`` a trial's share of correct windows (exact where trials are all right or
    all wrong, conservative otherwise: Hoeffding 1956). NaN for a class without windows.

    >>> low, high, n = class_trial_cis([0, 0, 1, 1], [3, 3, 3, 3], [3, 2, 0, 3], 3)
    >>> n.tolist(), low[:2].round(3).tolist(), high[:2].round(3).tolist(), bool(np.isnan(low[2]))
    ([2, 2, 0], [0.087, 0.013], [1.0, 0.987], True)
    """
    label, windows = np.asarray(trial_class), np.asarray(trial_windows)
    correct = np.asarray(trial_hits)
    if not (label.shape == windows.shape == correct.shape) or label.ndim != 1:
        shapes = f"got shapes {label.shape}, {windows.shape}, {correct.shape}"
        raise ArgumentError(f"trial_class, _windows and _hits must be 1-D, one per trial; {shapes}")
    check_number(level, "level", "between 0 and 1", lambda v: 0 < v < 1)
    low, high = np.full(n_classes, np.nan), np.full(n_classes, np.nan)
    trials = (
        np.bincount(label, minlength=n_classes)[:n_classes]
        if len(label)
        else np.zeros(n_classes, np.int64)
    )
    # each class's sum of shares as before (its own pairwise sum), then one vectorised
    # Clopper-Pearson for all classes: the same beta quantiles, element by element
    held_sum, held_n = np.zeros(n_classes), np.zeros(n_classes)
    for c in np.flatnonzero(trials):
        held = np.flatnonzero((label == c) & (windows > 0))
        held_sum[c], held_n[c] = (correct[held] / windows[held]).sum(), len(held)
    some = held_n > 0
    if some.any():
        low[some], high[some] = clopper_pearson(held_sum[some], held_n[some], level)
    return low, high, trials


def bootstrap_delta_ci(
    masked: Values,
    baseline: Values,
    *,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    relative: bool = True,
) -> tuple[float, float]:
    """Seeded percentile bootstrap interval of `delta_pct` over subjects, each resample keeping
    a subject's pair ``masked[i]``, ``baseline[i]`` together (``relative=False``: of the
    absolute change). Subjects with a NaN are left out; below 2 subjects ``(nan, nan)``.

    >>> low, high = bootstrap_delta_ci([0.5, 0.6, 0.55, 0.58], [0.9, 0.95, 0.92, 0.91])
    >>> bool(low < 100 * (0.5575 - 0.92) / 0.92 < high), (low, high) == bootstrap_delta_ci(
    ...     [0.5, 0.6, 0.55, 0.58], [0.9, 0.95, 0.92, 0.91])
    (True, True)
    """
    low, high = bootstrap_delta_cis(
        np.asarray(masked, float)[None],
        np.asarray(baseline, float),
        level=level,
        resamples=resamples,
        seed=seed,
        relative=relative,
    )
    return float(low[0]), float(high[0])


def bootstrap_delta_cis(
    masked: Float[np.ndarray, "rows n"],
    baseline: Values,
    *,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    chunk: int = 64,
    relative: bool = True,
) -> tuple[Float[np.ndarray, " rows"], Float[np.ndarray, " rows"]]:
    """`bootstrap_delta_ci` for each row of ``masked`` (column ``i`` is subject ``i``)
    against one baseline: ``(lows, highs)``, each row's interval exactly the one
    `bootstrap_delta_ci` gives it. Rows that leave out the same subjects share one draw of
    resamples, as the seed makes them; ``chunk`` rows at a time bound the memory.

    >>> base = np.array([0.9, 0.95, 0.92, 0.91])
    >>> masked = np.array([[0.5, 0.6, 0.55, 0.58], [0.9, np.nan, 0.9, 0.9]])
    >>> lows, highs = bootstrap_delta_cis(masked, base)
    >>> (float(lows[1]), float(highs[1])) == bootstrap_delta_ci([0.9, np.nan, 0.9, 0.9], base)
    True
    """
    masked, baseline = rows_and_baseline(
        masked, baseline, level, "bootstrap level", "a bootstrap interval"
    )
    tail = 100 * (1 - level) / 2
    lows, highs = np.full(len(masked), np.nan), np.full(len(masked), np.nan)
    keep = np.isfinite(masked) & np.isfinite(baseline)
    for pattern in np.unique(keep, axis=0):  # rows that leave out the same subjects
        n = int(pattern.sum())
        if n < 2:
            continue
        rows = np.flatnonzero((keep == pattern).all(1))
        idx = np.random.default_rng(seed).integers(0, n, (resamples, n))
        base_mean = baseline[pattern][idx].mean(axis=1)
        for start in range(0, len(rows), chunk):
            part = rows[start : start + chunk]
            with np.errstate(divide="ignore", invalid="ignore"):
                # one [rows * resamples, n] mean: the same reduction (and bits) as one row's
                draws = masked[part][:, pattern][:, idx].reshape(-1, n)
                means = draws.mean(axis=1).reshape(len(part), resamples)
                deltas = means - base_mean
                deltas = 100.0 * deltas / base_mean if relative else deltas
            finite = np.isfinite(deltas).all(1)
            if finite.any():
                lows[part[finite]], highs[part[finite]] = np.percentile(
                    deltas[finite], [tail, 100 - tail], axis=1
                )
            for i, row in zip(part[~finite], deltas[~finite]):  # a zero baseline mean
                row = row[np.isfinite(row)]
                if len(row):
                    lows[i], highs[i] = np.percentile(row, [tail, 100 - tail])
    return lows, highs


def subject_changes(
    baseline_rows: pd.DataFrame, masked_rows: pd.DataFrame, classes: list[int]
) -> pd.DataFrame:
    """Each subject's own change of accuracy over ``classes`` under a condition, with its
    interval over that subject's test trials: one row per subject (the baseline's order) with
    ``delta_pct`` (``100 (masked − baseline) / baseline``), ``low``, ``high``, ``unit`` and
    ``k3``, the third cumulant of the subject's Δ% as its trials measure it (NaN below 3
    trials).

    The interval is Bonferroni's over the subjects (one-sided ``ALPHA / n`` at each end), paired
    by trial where the cells hold their trials: the ratio ``Σ (h_masked − h_baseline) / Σ
    h_baseline`` linearised, with Student's t over the trials, never below −100 %. Cells stored
    without trials (``unit`` ``"window"``) give a change without an interval, which stops no
    claim; NaN bounds too below 2 trials or with no correct baseline window.

    >>> def cell(subject, key, hits):
    ...     return {"subject": subject, "key": key, "class_correct": [sum(hits)],
    ...             "class_total": [10 * len(hits)], "trial_class": [0] * len(hits),
    ...             "trial_windows": [10] * len(hits), "trial_hits": hits}
    >>> base = pd.DataFrame([cell(1, "b", [9] * 10), cell(2, "b", [9] * 10)])
    >>> cut = pd.DataFrame([cell(1, "c", [9] * 10), cell(2, "c", [5, 4, 6, 5, 5, 4, 6, 5, 5, 5])])
    >>> table = subject_changes(base, cut, [0])
    >>> print(table.round(1))  # subject 2: ± t(0.975, 9) · sd((m − 5) / 9) / √10 = ± 5.3
       delta_pct   low  high   unit   k3
    1        0.0   0.0   0.0  trial  0.0
    2      -44.4 -49.7 -39.1  trial  0.0
    """
    masked_by = {r.subject: r for r in masked_rows.itertuples(index=False)}
    n = max(len(baseline_rows), 1)
    out = {}
    for base in baseline_rows.itertuples(index=False):
        cut = masked_by.get(base.subject)
        row = {"delta_pct": np.nan, "low": np.nan, "high": np.nan, "unit": "trial", "k3": np.nan}
        if cut is None:
            out[base.subject] = row
            continue
        fields = ("trial_class", "trial_windows", "trial_hits")
        by_trial = all(
            isinstance(getattr(r, f, None), list | tuple | np.ndarray)
            for r in (base, cut)
            for f in fields
        )
        if by_trial:
            held = np.isin(np.asarray(base.trial_class), classes)
            b = np.asarray(base.trial_hits, float)[held]
            m = np.asarray(cut.trial_hits, float)[held]
        else:
            row["unit"] = "window"
            b = np.asarray([np.asarray(base.class_correct)[classes].sum()], float)
            m = np.asarray([np.asarray(cut.class_correct)[classes].sum()], float)
        total_b = float(b.sum())
        if total_b > 0:
            ratio = float((m.sum() - total_b) / total_b)
            row["delta_pct"] = 100 * ratio
            if by_trial and len(b) > 1:
                influence = (m - b - ratio * b) / b.mean()
                half = (
                    sps.t.ppf(1 - ALPHA / n, len(b) - 1) * influence.std(ddof=1) / np.sqrt(len(b))
                )
                row["low"], row["high"] = max(100 * (ratio - half), -100.0), 100 * (ratio + half)
                if len(b) > 2:  # the third cumulant of a mean of T trials: theirs over T²
                    row["k3"] = float(sps.kstat(100 * influence, 3)) / len(b) ** 2
        out[base.subject] = row
    columns = ["delta_pct", "low", "high", "unit", "k3"]
    return pd.DataFrame.from_dict(out, orient="index", columns=columns)
