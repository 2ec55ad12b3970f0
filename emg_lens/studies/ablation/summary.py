"""The summary of an ablation study's per-subject table: one row per (condition, metric) with
the change of the mean, its interval, the effect size, the test and the corrected p
(`summarize`), the families the correction runs over (`family_sizes`), the design's floor in
words (`power_note`) and the key to the stars (`legend`). `StudyResult` presents them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from jaxtyping import Float, Int

from emg_lens.errors import ArgumentError, checked
from emg_lens.stats.compare import (
    ALPHA,
    STAR_LEVELS,
    TEST_NAMES,
    compare_rows,
    correct,
    delta_pct,
    delta_t_intervals,
    one_baseline_row_each,
    rank_biserial_rows,
    stars,
)
from emg_lens.stats.design import corrected_floor, subjects_needed
from emg_lens.stats.metrics import RELATIVE_METRICS
from emg_lens.studies.spec_base import StatsSpec

CONDITION_COLUMNS = ["intervention", "mode", "layer", "layers", "heads", "key"]


FAMILY_COLUMN = {"mode": "mode", "intervention": "intervention", "all": None}


STRUCTURAL = "≡0"  # the stars of a structural zero: the mask cannot change the output


STATISTIC_NAMES = {
    "mannwhitneyu": "the masked sample's Mann–Whitney U",
    "wilcoxon": "Wilcoxon's W, the smaller signed-rank sum",
    "permutation": "the mean paired difference, masked − baseline",
}

STATISTIC_COLUMNS = {"mannwhitneyu": "U", "wilcoxon": "W", "permutation": "mean_diff"}
"""The name summary.md gives each test's statistic column (summary.csv's ``U``)."""


def legend(markdown: bool = False) -> str:
    """The key to the stars and ``r_rb`` of a study's tables and claims, a line each, as the
    console and summary.md (``markdown``: a paragraph each, the stars as code, which Markdown
    would read as emphasis), and so report.html, print it.

    >>> print(legend())  # doctest: +NORMALIZE_WHITESPACE
    Stars: * p_corr < 0.05, ** < 0.01, *** < 0.001, **** < 0.0001; ns: p_corr >= 0.05, no
    significant change (p_corr: p after the correction the study names).
    r_rb: the rank-biserial correlation, the effect size beside the test: -1 when every masked
    value lies below every baseline value (in a paired test, when every subject's value that
    changed fell), +1 when every one lies above, 0 for no tendency.
    """
    code = (lambda mark: f"`{mark}`") if markdown else str
    (weakest, mark), *stronger = reversed(STAR_LEVELS)
    levels = [f"{code(mark)} p_corr < {weakest:g}", *(f"{code(m)} < {t:g}" for t, m in stronger)]
    stars_line = (
        f"Stars: {', '.join(levels)}; {code('ns')}: p_corr >= {ALPHA:g}, no significant change "
        "(p_corr: p after the correction the study names)."
    )
    r_rb_line = (
        "r_rb: the rank-biserial correlation, the effect size beside the test: -1 when every "
        "masked value lies below every baseline value (in a paired test, when every subject's "
        "value that changed fell), +1 when every one lies above, 0 for no tendency."
    )
    return stars_line + ("\n\n" if markdown else "\n") + r_rb_line


@checked
def summarize(per_subject: pd.DataFrame, stats: StatsSpec) -> pd.DataFrame:
    """One row per condition and metric: per-subject values vs the baseline's, tested and
    corrected; the correction families are formed within each metric's table. A table without
    a ``metric`` column holds accuracy values.

    >>> table = pd.DataFrame({
    ...     "subject": [1, 2, 3, 1, 2, 3],
    ...     "intervention": ["baseline"] * 3 + ["cross"] * 3,
    ...     "mode": ["none"] * 3 + ["all"] * 3, "layer": [None] * 6, "layers": [""] * 6,
    ...     "heads": ["all"] * 6, "key": ["b"] * 3 + ["c"] * 3,
    ...     "value": [0.9, 0.92, 0.94, 0.6, 0.62, 0.64]})
    >>> row = summarize(table, StatsSpec()).iloc[0]
    >>> round(float(row.delta_pct), 1), float(row.U), round(float(row.p), 2), row.stars
    (-32.6, 0.0, 0.1, 'ns')
    >>> float(row.r_rb), bool(row.ci_low <= row.delta_pct <= row.ci_high)
    (-1.0, True)
    >>> margin = summarize(table.assign(metric="margin"), StatsSpec()).iloc[0]
    >>> round(float(margin.delta), 2), bool(np.isnan(margin.delta_pct))  # an absolute change
    (-0.3, True)
    """
    if "metric" not in per_subject.columns:
        per_subject = per_subject.assign(metric="accuracy")
    metric = per_subject["metric"].to_numpy()
    names = list(dict.fromkeys(metric.tolist()))  # in order of first appearance
    if len(names) == 1:  # one metric: its table is the summary
        return _summarize_metric(per_subject, stats, str(names[0]))
    tables = [_summarize_metric(per_subject[metric == m], stats, str(m)) for m in names]
    return pd.concat(tables, ignore_index=True)


def _summarize_metric(per_subject: pd.DataFrame, stats: StatsSpec, metric: str) -> pd.DataFrame:
    """`summarize` for the rows of one metric, in numpy: one pass over the rows to place each
    value at its (condition, subject), then the statistics of every condition at once. The
    mean and std are pandas' own (`_column_mean_std`), bit for bit."""
    relative = metric in RELATIVE_METRICS
    is_base = per_subject["intervention"].to_numpy() == "baseline"
    subject = per_subject["subject"].to_numpy()
    value = per_subject["value"].to_numpy(float)
    base_subjects, base_values = subject[is_base], value[is_base]
    one_baseline_row_each(base_subjects.tolist(), base_values, f"metric {metric!r}", ArgumentError)
    masked = np.flatnonzero(~is_base)
    # [condition, subject]: each condition's values aligned to the baseline's subjects, the
    # conditions in order of first appearance
    row, keys = pd.factorize(per_subject["key"].to_numpy()[masked])
    column = {s: i for i, s in enumerate(base_subjects.tolist())}
    values = np.full((len(keys), len(base_subjects)), np.nan)
    cols = np.array([column.get(s, -1) for s in subject[masked].tolist()], dtype=np.int64)
    placed = cols >= 0  # a subject without a baseline has nothing to be compared with
    cell = row[placed] * len(base_subjects) + cols[placed]
    if len(np.unique(cell)) != len(cell):
        raise ArgumentError(
            f"metric {metric!r}: a (condition key, subject) pair holds more than one row; "
            "a per-subject table has one value per subject and condition"
        )
    values.reshape(-1)[cell] = value[masked][placed]
    firsts = masked[np.unique(row, return_index=True)[1]]  # each condition's first row
    U, p = compare_rows(values, base_values, stats.test)
    # a structural zero (for every subject: `evaluate.structural_zeros`; none in a table from
    # before the flag) is not a test: no p, and out of the correction family
    flags = per_subject.get("structural", pd.Series(False, per_subject.index)).to_numpy(bool)
    zero = np.bincount(row[~flags[masked]], minlength=len(keys)) == 0
    U[zero], p[zero] = np.nan, np.nan
    ci_low, ci_high = delta_t_intervals(values, base_values, relative=relative)
    mean, std, n = _column_mean_std(values)
    # each row's baseline over the subjects it has a value for, as its interval and paired
    # tests are (every subject, where none is missing)
    has = np.isfinite(values) & np.isfinite(base_values)[None]
    base_mean = _column_mean_std(np.where(has, base_values[None], np.nan))[0]
    family = FAMILY_COLUMN[stats.family]
    groups = per_subject[family].to_numpy()[firsts] if family else np.zeros(len(keys))
    p_corr = np.full(len(keys), np.nan)
    for group in dict.fromkeys(groups.tolist()):
        members = np.flatnonzero(groups == group)
        p_corr[members] = correct(p[members].tolist(), stats.correction)
    # the condition columns' own arrays (their dtypes kept), no index to align
    condition = {c: per_subject[c].array.take(firsts) for c in CONDITION_COLUMNS}
    condition["layer"] = condition["layer"].astype("Int64")
    return pd.DataFrame(
        {
            **condition,
            "metric": metric,
            "n": n,
            "mean": mean,
            "std": std,
            "baseline": base_mean,
            "delta": mean - base_mean,
            "delta_pct": [delta_pct(m, b) if relative else np.nan for m, b in zip(mean, base_mean)],
            "ci_low": ci_low,
            "ci_high": ci_high,
            "r_rb": rank_biserial_rows(values, base_values, stats.test),
            "U": U,
            "p": p,
            "p_corr": p_corr,
            "stars": [STRUCTURAL if z else stars(q) for z, q in zip(zero, p_corr)],
        }
    )


def _column_mean_std(
    values: Float[np.ndarray, "rows n"],
) -> tuple[Float[np.ndarray, " rows"], Float[np.ndarray, " rows"], Int[np.ndarray, " rows"]]:
    """Each row's mean, std (ddof 1) and count of its non-NaN values, computed as pandas'
    ``DataFrame.mean``, ``std`` reduce a column (NaN read as 0 in each C-ordered row's sums):
    the same bits as the summary's pandas computation had."""
    values = np.ascontiguousarray(values, np.float64)
    missing = np.isnan(values)
    count = (~missing).sum(1)
    filled = np.where(missing, 0.0, values)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(1) / count
        squares = np.where(missing, 0.0, (mean[:, None] - filled) ** 2)
        var = squares.sum(1) / (count - 1)
    var[count <= 1] = np.nan
    return mean, np.sqrt(var), count


def family_sizes(summary: pd.DataFrame, stats: StatsSpec) -> list[int]:
    """The size ``m`` of each correction family of a summary (comparisons with a p-value; each
    metric's comparisons form families of their own).

    >>> summary = pd.DataFrame({"mode": ["individual"] * 4 + ["all"] * 2, "p": [0.1] * 6})
    >>> family_sizes(summary, StatsSpec()), family_sizes(summary, StatsSpec(family="all"))
    ([4, 2], [6])
    """
    tested = summary[np.isfinite(summary["p"].to_numpy(dtype=float))]
    # each metric's table is corrected on its own
    by = [c for c in ("metric", FAMILY_COLUMN[stats.family]) if c and c in tested.columns]
    if not by:
        return [len(tested)] if len(tested) else []
    return [int(m) for m in tested.groupby(by, sort=False).size()]


def planned_family_sizes(conditions: Iterable[Any], stats: StatsSpec) -> list[int]:
    """The correction families' sizes a study's grid gives (`expand_grid`'s conditions):
    `family_sizes` of the summary it will have, one row per distinct condition key. What
    `emg-lens study check` prints the design with before anything runs.

    >>> from emg_lens.studies import expand_grid
    >>> from emg_lens.studies import StudySpec
    >>> spec = StudySpec.from_dict({"name": "s", "models": "m",
    ...     "interventions": [{"name": "x", "edges": "cross_modal"}],
    ...     "layers": {"modes": ["individual", "all"]}})
    >>> planned_family_sizes(expand_grid(spec, 2, 4), spec.stats)
    [2, 1]
    """
    rows = pd.DataFrame([c.row() for c in conditions])
    return family_sizes(rows.drop_duplicates("key").assign(p=0.0), stats) if len(rows) else []


def power_note(n: int | None, sizes: list[int], stats: StatsSpec) -> str:
    """What the design can show at best: the smallest corrected p a cell can reach with ``n``
    subjects (perfect separation, through `emg_lens.stats.design.corrected_floor`), and, when
    that is not below 0.05, that no cell can be significant and how many subjects would be
    (``n`` None: not known yet, only the subjects a cell needs).

    >>> print(power_note(6, [10, 10], StatsSpec()))  # doctest: +NORMALIZE_WHITESPACE
    Design: 6 subjects, two-sided Mann–Whitney U, bonferroni over m = 10 comparisons per
    mode: the smallest corrected p any cell can reach (perfect separation) is 0.0126.
    >>> print(power_note(5, [30], StatsSpec()))  # doctest: +NORMALIZE_WHITESPACE
    Design: 5 subjects, two-sided Mann–Whitney U, bonferroni over m = 30 comparisons per
    mode: the smallest corrected p any cell can reach (perfect separation) is 0.119.
    No cell can be significant (p_corr < 0.05) with 5 subjects; that needs at least 6.
    """
    if not sizes or (n is not None and n < 1):
        return "Design: no comparison was tested."
    m = min(sizes)  # the smallest family reaches the smallest corrected p
    m_text = str(m) if min(sizes) == max(sizes) else f"{min(sizes)}–{max(sizes)}"
    if stats.correction == "none":
        correction = "no correction"
    else:
        scope = "in all" if stats.family == "all" else f"per {stats.family}"
        correction = f"{stats.correction} over m = {m_text} comparisons {scope}"
    if n is None:
        needed = subjects_needed(m, stats.test, stats.correction)
        need = f"at least {needed}" if needed is not None else "more than 200"
        return (
            f"Design: {TEST_NAMES[stats.test]}, {correction}: a cell can reach p_corr < "
            f"{ALPHA} with {need} subjects (no models found to count)."
        )
    floor = corrected_floor(n, m, stats.test, stats.correction)
    note = (
        f"Design: {n} subjects, {TEST_NAMES[stats.test]}, {correction}: the smallest "
        f"corrected p any cell can reach (perfect separation) is {floor:.3g}."
    )
    if floor >= ALPHA:
        needed = subjects_needed(m, stats.test, stats.correction)
        need = f"at least {needed}" if needed is not None else "more than 200"
        note += (
            f"\nNo cell can be significant (p_corr < {ALPHA}) with {n} subjects; that needs {need}."
        )
    return note


def correction_phrase(stats: StatsSpec) -> str:
    """How the correction is applied, in words.

    >>> correction_phrase(StatsSpec(correction="holm", family="all"))
    'holm over all comparisons'
    >>> correction_phrase(StatsSpec())
    'bonferroni over the comparisons of each mode'
    """
    if stats.correction == "none":
        return "no multiple-comparison correction"
    if stats.family == "all":
        return f"{stats.correction} over all comparisons"
    return f"{stats.correction} over the comparisons of each {stats.family}"
