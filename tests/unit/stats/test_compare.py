"""Study statistics (docs/DESIGN.md §5): tests, corrections, stars, Δ% and the summary table."""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from emg_lens.errors import ArgumentError, SpecError
from emg_lens.stats.compare import (
    clopper_pearson,
    compare,
    compare_rows,
    correct,
    delta_pct,
    delta_t_intervals,
    format_p,
    paired_test,
    rank_biserial,
    rank_biserial_rows,
    sign_flip_p,
    skew_t_interval,
    stars,
    t_interval,
)
from emg_lens.stats.design import corrected_floor, smallest_p, subjects_needed, tost, tost_max_sd
from emg_lens.stats.units import bootstrap_delta_ci, bootstrap_delta_cis
from emg_lens.studies import summarize
from emg_lens.studies.ablation.summary import family_sizes, power_note
from emg_lens.studies.spec_base import StatsSpec

# ----------------------------------------------------------------------------- compare


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [3, 5, 11])
def test_compare_mannwhitneyu_equals_scipy(seed, n):
    rng = np.random.default_rng(seed)
    masked = rng.normal(0.6, 0.1, n)
    baseline = rng.normal(0.7, 0.1, n + seed % 3)  # unequal sizes are allowed
    expected = sps.mannwhitneyu(masked, baseline, alternative="two-sided")
    U, p = compare(masked, baseline, "mannwhitneyu")
    assert (U, p) == (float(expected.statistic), float(expected.pvalue))
    assert compare(masked, baseline) == (U, p)  # the default is the paper's test


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [5, 9, 20])
def test_compare_wilcoxon_equals_scipy(seed, n):
    rng = np.random.default_rng(100 + seed)
    baseline = rng.normal(0.8, 0.05, n)
    masked = baseline + rng.normal(-0.02, 0.05, n)
    expected = sps.wilcoxon(masked, baseline, alternative="two-sided")
    assert compare(masked, baseline, "wilcoxon") == (
        float(expected.statistic),
        float(expected.pvalue),
    )


def _sign_flip_p(d: np.ndarray) -> float:
    """Brute force: the share of all 2**n sign patterns whose mean difference is at least
    as far from 0 as the observed one (ties within 1e-12 count)."""
    observed = abs(d.mean())
    means = [abs((d * signs).mean()) for signs in itertools.product((1, -1), repeat=len(d))]
    return float(np.mean([m >= observed - 1e-12 for m in means]))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [2, 5, 8, 12])
def test_compare_permutation_is_the_exact_sign_flip_p(seed, n):
    rng = np.random.default_rng(200 + seed)
    baseline = rng.normal(0.8, 0.05, n)
    masked = baseline + rng.normal(-0.02, 0.04, n)
    mean, p = compare(masked, baseline, "permutation")
    assert mean == pytest.approx((masked - baseline).mean(), abs=1e-15)
    assert p == pytest.approx(_sign_flip_p(masked - baseline), abs=1e-12)


def test_compare_permutation_above_the_exact_size_is_a_seeded_monte_carlo():
    """14 subjects: 2**14 patterns, drawn 10 000 times; the p is within Monte Carlo error of
    the exact one, the same on every call, and never 0."""
    rng = np.random.default_rng(7)
    baseline = rng.normal(0.8, 0.05, 14)
    masked = baseline + rng.normal(-0.015, 0.04, 14)
    exact = _sign_flip_p(masked - baseline)
    _, p = compare(masked, baseline, "permutation")
    assert abs(p - exact) <= 4 * math.sqrt(exact * (1 - exact) / 10_000) + 1 / 10_001
    assert compare(masked, baseline, "permutation")[1] == p
    # every subject drops: only the 2 one-sign patterns of 2**14 are as extreme, so a few
    # of the draws hit; (hits + 1) / 10 001 is never 0
    _, p_all = compare(baseline - 0.1, baseline, "permutation")
    assert 1 / 10_001 <= p_all < 10 / 10_001 and (p_all * 10_001) == pytest.approx(
        round(p_all * 10_001)
    )


@pytest.mark.unchecked
def test_compare_permutation_without_differences_is_not_significant_and_needs_pairs():
    assert compare([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], "permutation") == (0.0, 1.0)
    with pytest.raises(SpecError, match="permutation"):
        compare([0.5, 0.6], [0.5, 0.6, 0.7], "permutation")


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 6), (3, 10), (7, 7), (1, 200), (512, 928)])
def test_clopper_pearson_is_scipys_exact_interval(k, n):
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    low, high = clopper_pearson(k, n)
    assert float(low) == pytest.approx(ci.low, abs=1e-12)
    assert float(high) == pytest.approx(ci.high, abs=1e-12)
    assert np.isnan(clopper_pearson(0, 0)).all()


@pytest.mark.parametrize("test", ["mannwhitneyu", "wilcoxon", "permutation"])
def test_compare_rows_gives_every_row_its_own_test(test):
    """summarize tests all conditions at once; each must get the p its own test gives. scipy
    picks exact vs asymptotic Mann–Whitney for a whole call from *any* row's ties, so one
    plain vectorised call would change the p of the rows without ties."""
    baseline = np.array([0.91, 0.95, 0.93, 0.9, 0.97])
    masked = np.array(
        [
            [0.5, 0.6, 0.55, 0.58, 0.52],  # no ties: exact
            [0.9, 0.95, 0.9, 0.6, 0.7],  # ties within the row and with the baseline
            [0.92, np.nan, 0.9, 0.6, 0.7],  # a missing subject
            [0.8, 0.94, 0.96, 0.6, 0.7],  # no ties
        ]
    )
    U, p = compare_rows(masked, baseline, test)
    for row, u, q in zip(masked, U, p):
        expected = compare(row, baseline, test)
        assert (float(u), float(q)) == expected or (np.isnan(u) and np.isnan(expected[0]))
    if test == "mannwhitneyu":
        scipy_nan_row = sps.mannwhitneyu(masked[2], baseline)  # propagates the NaN
        assert np.isnan([U[2], p[2], scipy_nan_row.statistic, scipy_nan_row.pvalue]).all()
        one_call = sps.mannwhitneyu(masked[[0, 1]], baseline[None], axis=1).pvalue
        assert one_call[0] != p[0]  # the trap the grouping avoids


@pytest.mark.parametrize("scipy_version", ["installed", "1.18"])
def test_a_condition_equal_to_the_baseline_has_p_one_whatever_the_scipy_version(
    scipy_version, monkeypatch
):
    if scipy_version == "1.18":  # scipy 1.18 gives p = NaN where every value is equal

        def mannwhitneyu(x, y, **kwargs):
            res = real(x, y, **kwargs)
            x, y = np.atleast_2d(x), np.atleast_2d(y)
            rows = np.concatenate([x, np.broadcast_to(y, (len(x), y.shape[1]))], 1)
            p = np.where(np.ptp(rows, axis=1) == 0, np.nan, res.pvalue)
            return type(res)(res.statistic, p if np.ndim(res.pvalue) else p[0])

        real = sps.mannwhitneyu
        monkeypatch.setattr(sps, "mannwhitneyu", mannwhitneyu)
        assert np.isnan(sps.mannwhitneyu([1.0, 1.0], [1.0, 1.0]).pvalue)
    assert compare([1.0, 1.0, 1.0], [1.0, 1.0]) == (3.0, 1.0)
    U, p = compare_rows(np.array([[0.9, 0.9], [0.5, 0.9]]), [0.9, 0.9])
    assert (U[0], p[0]) == (2.0, 1.0) and 0 < p[1] < 1


def test_bootstrap_cis_equal_the_one_row_interval_bit_for_bit():
    rng = np.random.default_rng(3)
    for n in (2, 5, 12, 40):
        baseline = rng.uniform(0.8, 1.0, n)
        masked = rng.uniform(0.4, 1.0, (7, n))
        masked[2, 0] = masked[5, 1] = np.nan  # rows that leave out other subjects
        lows, highs = bootstrap_delta_cis(masked, baseline, chunk=3)
        for row, low, high in zip(masked, lows, highs):
            np.testing.assert_array_equal((low, high), bootstrap_delta_ci(row, baseline))
    lows, _ = bootstrap_delta_cis(np.array([[0.5, np.nan]]), np.array([0.9, 0.9]))
    assert np.isnan(lows).all()  # one subject left: no interval
    with pytest.raises(SpecError, match="one masked value per subject's baseline value"):
        bootstrap_delta_cis(np.ones((2, 3)), np.ones(4))


@pytest.mark.parametrize("n", [12, 14, 20, 40])
def test_compare_wilcoxon_with_unchanged_subjects_is_the_exact_test_of_the_changed(n):
    # Five subjects fall by distinct amounts and the rest do not change: zero_method="wilcox"
    # tests the five, whose exact two-sided p is 2 / 2**5 = 0.0625 however many unchanged
    # subjects there are (scipy's "auto" gave 0.043 from 14 subjects on: its normal
    # approximation, on five nonzero differences).
    baseline = np.full(n, 0.9)
    masked = baseline.copy()
    masked[:5] -= [0.1, 0.2, 0.3, 0.4, 0.5]
    assert compare(masked, baseline, "wilcoxon") == (0.0, pytest.approx(2 / 2**5, abs=1e-12))
    exact = sps.wilcoxon(masked[:5], baseline[:5], method="exact").pvalue
    assert compare(masked, baseline, "wilcoxon")[1] == pytest.approx(exact, abs=1e-12)


def test_compare_wilcoxon_with_tied_changes_permutes_their_signs():
    # Tied magnitudes: every sign pattern of the nonzero differences, enumerated (2**8)
    d = np.array([-0.1, -0.1, -0.1, -0.2, -0.2, 0.1, -0.3, -0.3])
    statistic, p = compare(0.5 + d, np.full(8, 0.5), "wilcoxon")
    ranks = sps.rankdata(np.abs(d))
    w = [sum(r for r, s in zip(ranks, signs, strict=True) if s > 0)
         for signs in itertools.product((-1, 1), repeat=8)]  # fmt: skip
    observed = min(ranks[d > 0].sum(), ranks[d < 0].sum())
    extreme = [min(x, ranks.sum() - x) <= observed + 1e-12 for x in w]
    assert statistic == observed and p == pytest.approx(np.mean(extreme), abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_compare_wilcoxon_with_ties_is_scipys_full_enumeration(seed):
    # Tied magnitudes among 12 nonzero differences: every one of the 2**12 sign patterns,
    # as scipy's permutation test enumerates them (eighths: exact in binary, ties stay ties)
    rng = np.random.default_rng(seed)
    d = rng.choice([-0.375, -0.25, -0.125, 0.125, 0.25], size=12)
    scipys = sps.wilcoxon(d, method=sps.PermutationMethod(n_resamples=2**12))
    assert compare(0.5 + d, np.full(12, 0.5), "wilcoxon") == (
        scipys.statistic, pytest.approx(scipys.pvalue, abs=1e-12))  # fmt: skip


def test_compare_wilcoxon_with_ties_is_exact_at_many_subjects():
    # 30 tied differences, 27 down: not a Monte Carlo estimate but the exact tail of the
    # doubled midranks' sum, which a rerun with another seed cannot move; here the observed
    # sum of the three rises' ranks (3 of the 12 smallest magnitudes: midrank 6.5 each)
    # against all 2**30 patterns, counted in exact sums as the share with a sum of positive
    # ranks <= 19.5 or, mirrored, >= 465 - 19.5
    d = np.r_[np.full(9, -0.125), np.full(3, 0.125), np.full(18, -0.25)]
    statistic, p = compare(0.5 + d, np.full(30, 0.5), "wilcoxon")
    ranks = sps.rankdata(np.abs(d))
    counts = {0: 1}
    for r in ranks:
        step = dict(counts)
        for s, c in counts.items():
            step[s + r] = step.get(s + r, 0) + c
        counts = step
    low = sum(c for s, c in counts.items() if s <= 19.5)
    assert statistic == 19.5 and p == pytest.approx(2 * low / 2**30, rel=1e-12)


def test_compare_wilcoxon_without_differences_is_not_significant():
    assert compare([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], "wilcoxon") == (0.0, 1.0)


_DIFFERENCES = {  # paired differences of 8 subjects: none, one, all tied
    "none": np.zeros(8),
    "one": np.r_[-0.1, np.zeros(7)],
    "tied": np.full(8, -0.1),
}


@pytest.mark.parametrize("case", list(_DIFFERENCES))
@pytest.mark.parametrize("test", ["wilcoxon", "permutation"])  # claims at 13: test_claims.py
def test_every_paired_path_takes_no_one_and_all_tied_differences(test, case):
    # Quantised accuracies leave one subject changed and the rest exactly unchanged; scipy's
    # wilcoxon raised on one nonzero difference, whose two signs are equally likely: p = 1.
    d = _DIFFERENCES[case]
    baseline = np.full(len(d), 0.8)
    statistic, p = compare(baseline + d, baseline, test)
    U, ps = compare_rows((baseline + d)[None], baseline, test)
    assert (U[0], ps[0]) == (statistic, p)
    nonzero = d[d != 0]
    if len(nonzero) < 2:
        assert p == sign_flip_p([d])[0] == 1.0
    else:  # every nonzero difference of one sign and one size: 2 of the 2**n sign patterns
        assert p == sign_flip_p([d])[0] == pytest.approx(2 / 2 ** len(nonzero), abs=1e-12)
    assert rank_biserial(baseline + d, baseline, test) == (-1.0 if len(nonzero) else 0.0)


def test_compare_wilcoxon_needs_pairs():
    with pytest.raises(SpecError, match="wilcoxon"):
        compare([0.5, 0.6], [0.5, 0.6, 0.7], "wilcoxon")


@pytest.mark.parametrize("test", ["ttest", "Mannwhitneyu", ""])
def test_compare_rejects_unknown_test(test):
    with pytest.raises(SpecError, match="mannwhitneyu") as info:
        compare([0.1, 0.2], [0.3, 0.4], test)
    assert repr(test) in str(info.value)


# ----------------------------------------------------------------------------- correct


def _holm_by_hand(p: list[float]) -> list[float]:
    """Holm's step-down, written the textbook way: walk the p-values in ascending order,
    multiply the i-th smallest (0-based) by m - i, never go down, cap at 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    out = [0.0] * m
    floor = 0.0
    for i, idx in enumerate(order):
        floor = max(floor, min(1.0, (m - i) * p[idx]))
        out[idx] = floor
    return out


@pytest.mark.parametrize("seed", range(10))
def test_bonferroni_is_p_times_family_size_capped_at_one(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 12))
    p = (rng.uniform(0, 0.3, m) ** 2).tolist()
    assert correct(p, "bonferroni") == pytest.approx([min(1.0, x * m) for x in p], abs=0)


@pytest.mark.parametrize("seed", range(10))
def test_holm_equals_a_hand_step_down(seed):
    rng = np.random.default_rng(50 + seed)
    m = int(rng.integers(1, 12))
    p = rng.uniform(0, 0.5, m).tolist()
    if m > 2:
        p[1] = p[0]  # a tie
    assert correct(p, "holm") == pytest.approx(_holm_by_hand(p), rel=1e-12)


def test_corrections_by_hand():
    p = [0.01, 0.04, 0.03, 0.5]
    assert correct(p, "bonferroni") == pytest.approx([0.04, 0.16, 0.12, 1.0])
    # sorted: 0.01*4=0.04, 0.03*3=0.09, 0.04*2=0.08 -> 0.09 (monotone), 0.5*1=0.5
    assert correct(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert correct(p, "none") == p


def test_nan_p_values_stay_out_of_the_family():
    p = [0.01, float("nan"), 0.02]
    out = correct(p, "bonferroni")
    assert out[0] == pytest.approx(0.02) and out[2] == pytest.approx(0.04)  # m = 2, not 3
    assert math.isnan(out[1])
    holm = correct(p, "holm")
    assert holm[0] == pytest.approx(0.02) and holm[2] == pytest.approx(0.02)
    assert math.isnan(holm[1])


@pytest.mark.parametrize("method", ["bh", "Bonferroni", "fdr"])
def test_correct_rejects_unknown_method(method):
    with pytest.raises(SpecError, match="bonferroni") as info:
        correct([0.1], method)
    assert repr(method) in str(info.value)


@pytest.mark.parametrize(
    ("key", "value"), [("test", "ttest"), ("correction", "bh"), ("family", "layer")]
)
def test_stats_spec_rejects_unknown_names(key, value):
    with pytest.raises(SpecError) as info:
        StatsSpec.from_dict({key: value})
    message = str(info.value)
    assert f"stats.{key}" in message and repr(value) in message and "accepted" in message


# ----------------------------------------------------------------------------- stars, Δ%


@pytest.mark.parametrize(
    ("p", "mark"),
    [
        (0.0, "****"),
        (9.999e-5, "****"),
        (1e-4, "***"),
        (1.0001e-4, "***"),
        (9.999e-4, "***"),
        (1e-3, "**"),
        (1.0001e-3, "**"),
        (9.999e-3, "**"),
        (1e-2, "*"),
        (1.0001e-2, "*"),
        (0.04999, "*"),
        (0.05, "ns"),
        (0.05001, "ns"),
        (1.0, "ns"),
        (float("nan"), "ns"),
    ],
)
def test_stars_thresholds(p, mark):
    assert stars(p) == mark


def test_delta_pct():
    assert round(delta_pct(0.636, 0.914), 1) == -30.4  # a row of the paper's Table 3
    assert delta_pct(0.5, 0.5) == 0.0
    assert delta_pct(0.75, 0.5) == pytest.approx(50.0)
    assert math.isnan(delta_pct(0.5, 0.0))


# ----------------------------------------------------------------------------- summarize

BASE = [0.80, 0.82, 0.84, 0.86]  # mean 0.83
# Four subjects each side, no ties: the exact two-sided Mann-Whitney p of U = u is
# 2 * #{arrangements with U <= u} / C(8, 4) = 70, i.e. U=0: 2/70, 1: 4/70, 2: 8/70, 3: 14/70.
CONDITIONS = [
    # key, intervention, mode, layer, values, mean, U, p
    ("k1", "uni", "individual", 0, [0.50, 0.60, 0.70, 0.75], 0.6375, 0.0, 2 / 70),
    ("k2", "cross", "individual", 0, [0.50, 0.60, 0.70, 0.81], 0.6525, 1.0, 4 / 70),
    ("k3", "uni", "individual", 1, [0.50, 0.60, 0.70, 0.83], 0.6575, 2.0, 8 / 70),
    ("k4", "cross", "all", None, [0.50, 0.60, 0.70, 0.85], 0.6625, 3.0, 14 / 70),
    ("k5", "uni", "all", None, [0.90, 0.91, 0.92, 0.93], 0.915, 16.0, 2 / 70),
]


def _per_subject(shuffle_seed: int | None = None) -> pd.DataFrame:
    rows = [
        {"subject": s, "intervention": "baseline", "mode": "none", "layer": None, "value": v}
        for s, v in zip([1, 2, 3, 4], BASE)
    ]
    for key, name, mode, layer, values, *_ in CONDITIONS:
        rows += [
            {
                "subject": s,
                "intervention": name,
                "mode": mode,
                "layer": layer,
                "value": v,
                "key": key,
            }
            for s, v in zip([1, 2, 3, 4], values)
        ]
    table = pd.DataFrame(rows)
    table["key"] = table["key"].fillna("base")
    table["layers"] = table["layer"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    table["heads"] = "all"
    if shuffle_seed is not None:
        table = table.sample(frac=1.0, random_state=shuffle_seed).reset_index(drop=True)
    return table


# p_corr by hand, in CONDITIONS order, for each family with Bonferroni:
# mode: individual {k1,k2,k3} m=3, all {k4,k5} m=2; intervention: uni {k1,k3,k5} m=3, cross
# {k2,k4} m=2; all: m=5.
EXPECTED_P_CORR = {
    "mode": [6 / 70, 12 / 70, 24 / 70, 28 / 70, 4 / 70],
    "intervention": [6 / 70, 8 / 70, 24 / 70, 28 / 70, 6 / 70],
    "all": [10 / 70, 20 / 70, 40 / 70, 1.0, 10 / 70],
}


@pytest.mark.parametrize("family", ["mode", "intervention", "all"])
def test_summarize_by_hand(family):
    summary = summarize(_per_subject(), StatsSpec(family=family))
    assert list(summary["key"]) == [c[0] for c in CONDITIONS]
    assert list(summary["n"]) == [4] * 5
    assert summary["baseline"].tolist() == pytest.approx([0.83] * 5)
    assert summary["mean"].tolist() == pytest.approx([c[5] for c in CONDITIONS])
    assert summary["delta_pct"].tolist() == pytest.approx(
        [100 * (c[5] - 0.83) / 0.83 for c in CONDITIONS]
    )
    assert round(summary["delta_pct"].iloc[0], 2) == -23.19
    assert summary["U"].tolist() == [c[6] for c in CONDITIONS]
    assert summary["p"].tolist() == pytest.approx([c[7] for c in CONDITIONS])
    assert summary["p_corr"].tolist() == pytest.approx(EXPECTED_P_CORR[family])
    assert list(summary["stars"]) == ["ns"] * 5  # every corrected p is >= 4/70 > 0.05
    assert summary["layer"].tolist()[:3] == [0, 0, 1] and summary["layer"].isna().tolist()[3:]


def test_summarize_holm_and_uncorrected():
    holm = summarize(_per_subject(), StatsSpec(correction="holm", family="mode"))
    # individual: p = 2, 4, 8 (/70) -> 3*2, max(6, 2*4), max(8, 1*8) = 6, 8, 8 (/70)
    # all: p = 14, 2 (/70) -> k5 first: 2*2 = 4, then max(4, 14) = 14 (/70)
    assert holm["p_corr"].tolist() == pytest.approx([6 / 70, 8 / 70, 8 / 70, 14 / 70, 4 / 70])
    raw = summarize(_per_subject(), StatsSpec(correction="none"))
    assert raw["p_corr"].tolist() == pytest.approx([c[7] for c in CONDITIONS])
    assert list(raw["stars"]) == ["*", "ns", "ns", "ns", "*"]


def test_summarize_pairs_subjects_whatever_the_row_order():
    ordered = _per_subject()
    shuffled = _per_subject(shuffle_seed=3)
    spec = StatsSpec(test="wilcoxon")
    a = summarize(ordered, spec).set_index("key")
    b = summarize(shuffled, spec).set_index("key").loc[a.index]
    pd.testing.assert_frame_equal(a, b)
    masked = np.array(CONDITIONS[1][4])
    expected = sps.wilcoxon(masked, np.array(BASE), alternative="two-sided")
    assert (a.loc["k2", "U"], a.loc["k2", "p"]) == (expected.statistic, expected.pvalue)


def test_a_subject_twice_in_the_baseline_is_refused_by_name():
    """Issue 86: a subject twice in the baseline (accuracies 0.9 and 0.1) was accepted, the
    second row silently kept."""
    table = _per_subject()
    twice = table[(table.intervention == "baseline") & (table.subject == 2)].assign(value=0.1)
    with pytest.raises(
        ArgumentError, match=r"subject 2 holds 2 baseline rows \(values 0.\d+, 0.1\)"
    ):
        summarize(pd.concat([table, twice], ignore_index=True), StatsSpec())


# ----------------------------------------------------------------------------- power note


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_smallest_p_is_scipys_p_for_perfect_separation(n):
    # n subjects each side, every masked value below every baseline value: with distinct
    # values the exact two-sided p is 2 / C(2n, n); values tied within each condition switch
    # scipy to its tie-corrected normal approximation, which goes lower, and no other pattern
    # of ties goes lower still (checked over every pattern of 4 levels for n = 3..6). The
    # paired test's is 2 / 2**n.
    low, high = np.arange(n) / 10, 1 + np.arange(n) / 10
    mwu = sps.mannwhitneyu(low, high, alternative="two-sided").pvalue
    assert mwu == pytest.approx(2 / math.comb(2 * n, n), rel=1e-12)
    tied = sps.mannwhitneyu(np.zeros(n), np.ones(n), alternative="two-sided").pvalue
    assert tied < mwu
    assert smallest_p(n) == pytest.approx(tied, rel=1e-12)
    paired = sps.wilcoxon(low, high + np.arange(n) / 7, alternative="two-sided").pvalue
    assert smallest_p(n, "wilcoxon") == pytest.approx(paired, rel=1e-12)
    assert smallest_p(n, "wilcoxon") == pytest.approx(2 / 2**n, rel=1e-12)
    assert smallest_p(n, "permutation") == pytest.approx(2 / 2**n, rel=1e-12)


def test_corrected_floor_and_subjects_needed_by_hand():
    tied = sps.mannwhitneyu([0.0] * 4, [1.0] * 4).pvalue  # 0.0131, below 2 / C(8, 4)
    assert corrected_floor(4, 3) == pytest.approx(3 * tied)  # 0.039: a star is possible
    assert corrected_floor(4, 3, correction="holm") == pytest.approx(3 * tied)
    assert corrected_floor(4, 3, correction="none") == pytest.approx(tied)
    assert corrected_floor(4, 100) == 1.0  # capped
    assert subjects_needed(3) == 4  # 3 * 0.0131 < 0.05; n = 3: 3 * 0.0469 = 0.14
    assert subjects_needed(3, "wilcoxon") == 7  # 3 * 2 / 2**7 = 0.047; 2**6 gives 0.094
    with pytest.raises(SpecError, match="bonferroni"):
        corrected_floor(4, 3, correction="bh")


def test_summary_power_note_says_when_no_cell_can_be_significant():
    # The design of _per_subject: families of 3 and 2 comparisons per mode.
    sizes = family_sizes(summarize(_per_subject(), StatsSpec()), StatsSpec())
    assert sizes == [3, 2]
    note = power_note(3, sizes, StatsSpec())
    assert "3 subjects" in note and "m = 2–3" in note
    floor = 2 * sps.mannwhitneyu([0.0] * 3, [1.0] * 3).pvalue  # the smaller family's: 0.094
    assert f"{floor:.3g}" in note
    assert "No cell can be significant" in note and "at least 4" in note
    enough = power_note(4, sizes, StatsSpec())
    assert f"{2 * sps.mannwhitneyu([0.0] * 4, [1.0] * 4).pvalue:.3g}" in enough
    assert "No cell" not in enough
    paired = power_note(4, sizes, StatsSpec(test="wilcoxon"))
    assert "Wilcoxon" in paired and "at least 7" in paired  # 2 * 2 / 2**6 = 0.0625 > 0.05


def test_the_paired_test_is_exact_sign_flip_up_to_twelve_subjects_then_wilcoxon():
    assert [paired_test(n) for n in (2, 12, 13)] == ["permutation", "permutation", "wilcoxon"]
    rng = np.random.default_rng(5)
    for n in (8, 15):
        baseline = rng.normal(0.8, 0.05, n)
        masked = baseline + rng.normal(-0.02, 0.03, n)
        assert compare(masked, baseline, "paired") == compare(masked, baseline, paired_test(n))
    assert smallest_p(8, "paired") == 2 / 2**8 == 0.0078125  # two stars at most with 8
    assert stars(smallest_p(8, "paired")) == "**"
    assert smallest_p(13, "paired") == pytest.approx(2 / 2**13)  # Wilcoxon's exact floor
    assert subjects_needed(1, "paired") == 6 and subjects_needed(4, "paired", "holm") == 8


# ----------------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [2, 3, 8])
def test_t_interval_and_tost_are_scipys_t_tests(seed, n):
    x = np.random.default_rng(seed).normal(-1, 2, n)
    low, high = t_interval(x, 0.9)
    expected = sps.t.interval(0.9, n - 1, loc=x.mean(), scale=sps.sem(x))
    assert (low, high) == pytest.approx(expected, rel=1e-12)
    for bound in (1.0, 3.0, 6.0):
        one = sps.ttest_1samp(x, -bound, alternative="greater").pvalue
        other = sps.ttest_1samp(x, bound, alternative="less").pvalue
        p = tost(x, bound, skew_corrected=False)
        assert p == pytest.approx(max(one, other), rel=1e-10)
        assert (p < 0.05) == (-bound < low and high < bound)  # TOST at 5 %: the 90 % interval
    sd = float(np.std(x, ddof=1))
    assert (sd < tost_max_sd(n, 5.0)) == (t_interval(x - x.mean(), 0.9)[1] < 5.0)


def _hall_t(x, mu0):
    """Hall's (1992) monotone form of Johnson's (1978) skewness-corrected t statistic, written
    from the papers: with θ = (x̄ − μ0) / s and γ the adjusted Fisher–Pearson skewness,
    √n (θ + γ / (6n) + γ θ² / 3 + γ² θ³ / 27)."""
    n = len(x)
    theta = (x.mean() - mu0) / x.std(ddof=1)
    gamma = sps.skew(x, bias=False)
    return np.sqrt(n) * (theta + gamma / (6 * n) + gamma * theta**2 / 3 + gamma**2 * theta**3 / 27)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n", [3, 5, 12])
def test_tost_is_halls_skew_corrected_t_and_its_interval_inverts_it(seed, n):
    """Per-subject changes of a count lean left (issue 78: Student's TOST held 6.1-6.8 % of
    claims on their margin): each one-sided test is Hall's form of Johnson's t, p from
    Student's t with n − 1 degrees of freedom; the 90 % interval is exactly the means neither
    one-sided test at 5 % rejects (found here by root search, not by the closed form)."""
    from scipy.optimize import brentq

    x = -5 + np.random.default_rng([seed, n]).lognormal(0, 1, n) * -1
    df = n - 1
    for bound in (2.0, 6.0, 12.0):
        one = sps.t.sf(_hall_t(x, -bound), df)
        other = sps.t.cdf(_hall_t(x, bound), df)
        assert tost(x, bound) == pytest.approx(max(one, other), rel=1e-9)
    low, high = skew_t_interval(x, 0.9)
    crit = sps.t.ppf(0.95, df)
    span = 50 * x.std(ddof=1)
    assert low == pytest.approx(brentq(lambda m: _hall_t(x, m) - crit, x.mean() - span, x.mean()))
    assert high == pytest.approx(brentq(lambda m: _hall_t(x, m) + crit, x.mean(), x.mean() + span))
    for bound in np.linspace(0.5, 30, 25):
        assert (tost(x, bound) < 0.05) == (-bound < low and high < bound)
    assert low < x.mean() < high


def test_the_skew_corrected_interval_is_students_without_skew_or_below_three_values():
    symmetric = np.array([-3.0, -1.0, 0.0, 1.0, 3.0])  # sample skewness exactly 0
    assert skew_t_interval(symmetric) == pytest.approx(t_interval(symmetric))
    assert tost(symmetric, 4.0) == pytest.approx(tost(symmetric, 4.0, skew_corrected=False))
    two = [-6.0, -1.0]  # two values carry no skewness: Student's t
    assert skew_t_interval(two) == pytest.approx(t_interval(two))
    assert skew_t_interval([1.0, 1.0, 1.0]) == (1.0, 1.0)
    assert np.isnan(skew_t_interval([1.0])[0])
    floored = skew_t_interval([0.0] * 6, sd_floor=2.0)  # no spread, floored: symmetric
    assert floored == pytest.approx(t_interval([0.0] * 6, sd_floor=2.0))


def test_equivalence_edge_cases():
    assert np.isnan(tost([1.0], 5.0)) and np.isnan(t_interval([1.0, np.nan])[0])
    assert tost([0.5, 0.5, 0.5], 1.0) == 0.0 and tost([2.0, 2.0], 1.0) == 1.0  # no spread
    assert t_interval([0.5, 0.5, 0.5]) == (0.5, 0.5)
    with pytest.raises(SpecError, match="bound must be > 0"):
        tost([1.0, 2.0], 0)
    with pytest.raises(SpecError, match=r"level must be in \(0, 1\), got 90$"):
        t_interval([1.0, 2.0], 90)


@pytest.mark.unchecked  # levels that the annotation, float, refuses
def test_an_interval_level_that_is_no_number_is_named():
    for bad in (True, "0.9"):
        with pytest.raises(SpecError, match=rf"level must be in \(0, 1\), got {bad!r}$"):
            t_interval([1.0, 2.0], bad)


# ----------------------------------------------------------------------------- p as printed


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (0.0, "< 1e-16"),
        (1e-300, "< 1e-16"),
        (3.2e-12, "3.2e-12"),
        (2.5e-5, "2.5e-05"),
        (0.000311, "0.000311"),
        (0.0078125, "0.00781"),
        (0.5, "0.5"),
        (1.0, "1"),
        (float("nan"), "n/a"),
    ],
)
def test_a_p_value_is_never_printed_as_zero(p, text):
    assert format_p(p) == text
    assert format_p(p, name="p") == (f"p {text}" if text.startswith("<") else f"p = {text}")


def test_tables_and_chance_print_tiny_p_values_as_a_bound_or_in_scientific_notation():
    from emg_lens.output import markdown_table
    from emg_lens.stats.chance import chance_console, chance_markdown, chance_table
    from emg_lens.train.baseline import below_baseline

    table = markdown_table(pd.DataFrame({"x": [0.0, 0.0], "p": [0.0, 2e-5], "p_corr": [0.0, 1]}))
    assert table.splitlines()[2:] == ["| 0.000 | < 1e-16 | < 1e-16 |", "| 0.000 | 2e-05 | 1 |"]
    chance = chance_table({"subject 1": (1200, [600, 600])})  # binomial p underflows to 0
    assert chance["p"][0] < 1e-300
    assert "| < 1e-16 |" in chance_markdown(chance)
    assert "p < 1e-16" in chance_console(
        chance, below_baseline=below_baseline
    ) and "p = 0" not in chance_console(chance, below_baseline=below_baseline)


# ----------------------------------------------------------------------------- effect sizes


def test_rank_biserial_by_hand():
    masked = CONDITIONS[1][4]  # 0.50, 0.60, 0.70, 0.81 vs BASE 0.80 .. 0.86
    # one pair of 16 has masked > baseline (0.81 > 0.80): U_masked = 1, U_baseline = 15,
    # r = 1 - 2 * 15 / 16 = -0.875
    assert rank_biserial(masked, BASE) == pytest.approx(-0.875)
    assert rank_biserial(CONDITIONS[4][4], BASE) == pytest.approx(1.0)  # all above
    assert rank_biserial([0.5, 0.8], [0.8, 0.9]) == pytest.approx(-0.75)  # a tie counts half
    # paired: d = +0.1, -0.2, -0.3, +0.05 -> |d| ranks 2, 3, 4, 1: T+ = 3, T- = 7
    paired = rank_biserial([0.9, 0.6, 0.5, 0.85], [0.8, 0.8, 0.8, 0.8], "wilcoxon")
    assert paired == pytest.approx((3 - 7) / 10)
    assert rank_biserial([0.8, 0.7], [0.8, 0.7], "wilcoxon") == 0.0


@pytest.mark.parametrize("test", ["mannwhitneyu", "wilcoxon"])
def test_rank_biserial_rows_is_each_rows_rank_biserial(test):
    rng = np.random.default_rng(3)
    rows = rng.choice([0.5, 0.6, 0.7, 0.8], size=(40, 5))  # ties, with the baseline too
    rows[3, 1], rows[4, 0], rows[5] = np.nan, np.inf, np.nan  # left out; a row of none: NaN
    baseline = np.array([0.6, 0.7, 0.8, np.nan, 0.6])
    got = rank_biserial_rows(rows, baseline, test)
    assert got.shape == (40,)
    for row, r in zip(rows, got):
        alone = rank_biserial(row, baseline, test)
        assert r == alone or (np.isnan(r) and np.isnan(alone))  # bit for bit
        if test == "mannwhitneyu":  # P(masked > baseline) - P(masked < baseline), by pairs
            pairs = [(m, b) for m in row for b in baseline if np.isfinite(m) and np.isfinite(b)]
            expected = np.mean([np.sign(m - b) for m, b in pairs]) if pairs else np.nan
            np.testing.assert_allclose(r, expected, rtol=0, atol=1e-12)


def test_the_tables_interval_is_the_claims_skew_corrected_t_never_below_minus_100():
    """Issue 86, item 4: the table's 95 % interval of Δ% is the claims' skew-corrected t
    (`skew_t_interval`) spanned with Student's, of the ratio of means' linearised values, and
    never below −100 %: no accuracy falls by more than all of it (Student's reached −210 %
    here)."""
    low, high = delta_t_intervals(np.array([[0.0, 0.0, 0.9]]), np.array([0.9, 0.9, 0.9]))
    assert low[0] == -100.0 and high[0] > delta_pct(0.3, 0.9)
    rng = np.random.default_rng(86)
    for n in (3, 5, 12):
        base = rng.uniform(0.8, 0.95, n)
        masked = base * (1 - rng.exponential(0.3, n)).clip(0)
        r = masked.mean() / base.mean() - 1
        pseudo = 100 * (r + (masked - (1 + r) * base) / base.mean())
        low, high = delta_t_intervals(masked[None], base)
        expected = skew_t_interval(pseudo, 0.95, third=0.0)  # spanning Student's
        assert (low[0], high[0]) == pytest.approx((max(expected[0], -100.0), expected[1]))
        absolute = delta_t_intervals(masked[None], base, relative=False)
        assert (absolute[0][0], absolute[1][0]) == pytest.approx(
            skew_t_interval(masked - base, 0.95, third=0.0)
        )
    # an absolute change, or values that can be negative, is no share of a count: not clipped
    margins = np.array([[-3.0, -2.9, 0.1]]), np.array([0.1, 0.1, 0.1])
    assert delta_t_intervals(*margins, relative=False)[0][0] < -3
    assert delta_t_intervals(*margins)[0][0] < -100
    summary = summarize(
        pd.DataFrame(
            {"subject": [1, 2, 3] * 2, "intervention": ["baseline"] * 3 + ["cut"] * 3,
             "mode": ["none"] * 3 + ["all"] * 3, "layer": [None] * 6, "layers": [""] * 6,
             "heads": ["all"] * 6, "key": ["b"] * 3 + ["c"] * 3,
             "value": [0.9, 0.9, 0.9, 0.0, 0.0, 0.9]}
        ),
        StatsSpec(),
    )  # fmt: skip
    assert summary.loc[0, "ci_low"] == -100.0


def test_summary_has_effect_sizes_and_intervals():
    summary = summarize(_per_subject(), StatsSpec()).set_index("key")
    assert summary.loc["k2", "r_rb"] == pytest.approx(-0.875)
    assert summary.loc["k1", "r_rb"] == -1.0 and summary.loc["k5", "r_rb"] == 1.0
    assert (summary["ci_low"] <= summary["delta_pct"]).all()
    assert (summary["delta_pct"] <= summary["ci_high"]).all()
    again = summarize(_per_subject(), StatsSpec()).set_index("key")
    pd.testing.assert_frame_equal(summary, again)  # seeded: a rerun writes the same table


def test_bootstrap_ci_is_seeded_and_contains_the_mean_change():
    rng = np.random.default_rng(7)
    base = rng.uniform(0.8, 0.95, 10)
    masked = base - rng.uniform(0.1, 0.3, 10)
    low, high = bootstrap_delta_ci(masked, base)
    assert low < delta_pct(masked.mean(), base.mean()) < high < 0
    assert bootstrap_delta_ci(masked, base) == (low, high)
    assert bootstrap_delta_ci(masked, base, seed=1) != (low, high)
    # resampling keeps pairs: the interval of a constant per-subject ratio is that ratio
    assert bootstrap_delta_ci(0.5 * base, base) == pytest.approx((-50.0, -50.0))
    wider = bootstrap_delta_ci(masked, base, level=0.99)
    assert wider[0] <= low and wider[1] >= high
    assert all(math.isnan(v) for v in bootstrap_delta_ci([0.5], [0.9]))
    with pytest.raises(SpecError, match="one masked value per subject"):
        bootstrap_delta_ci([0.5, 0.6], [0.9])


# ----------------------------------------------------------------------------- per class


def _with_class_counts() -> pd.DataFrame:
    """_per_subject with two classes per cell: class 0 keeps its accuracy, class 1 drops."""
    table = _per_subject()
    masked = table["intervention"] != "baseline"
    table["class_correct"] = [[9, 2 if m else 8] for m in masked]
    table["class_total"] = [[10, 10]] * len(table)
    return table


def test_per_class_csv_columns_and_values(tmp_path, monkeypatch):
    from emg_lens.studies import StudyResult, StudySpec

    monkeypatch.setattr(StudyResult, "figures", lambda self: {})
    spec = StudySpec.from_dict(
        {"name": "t", "models": "x", "interventions": [{"name": "uni", "edges": "unimodal"}]}
    )
    result = StudyResult.from_table(spec, _with_class_counts())
    result.save(tmp_path)
    per_class = pd.read_csv(tmp_path / "per_class.csv")
    assert list(per_class.columns) == [
        *("subject", "intervention", "mode", "layer", "layers", "heads", "key"),
        *("class", "correct", "total", "accuracy", "ci_low", "ci_high", "trials", "unit"),
    ]
    assert (per_class["unit"] == "window").all()  # cells without trials: over windows
    assert len(per_class) == 2 * len(result.per_subject)
    assert per_class["accuracy"].tolist() == pytest.approx(per_class["correct"] / 10)
    for row in per_class.itertuples():  # exact 95 % intervals of correct / total
        ci = sps.binomtest(row.correct, row.total).proportion_ci(method="exact")
        assert (row.ci_low, row.ci_high) == pytest.approx((ci.low, ci.high), abs=1e-9)
    base = per_class[per_class["intervention"] == "baseline"]
    assert base.groupby("class")["accuracy"].mean().tolist() == pytest.approx([0.9, 0.8])
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert {"ci_low", "ci_high", "r_rb"} <= set(summary.columns)
    markdown = (tmp_path / "summary.md").read_text()
    assert "smallest corrected p" in markdown and "| r_rb |" in markdown
    # issue 86: the interval's method and what it assumes, on the table's face
    said = " ".join(markdown.split())
    assert "Student's t spanned with the claims' correction for the subjects' skewness" in said
    assert "never below −100 %" in said and "it covers less than 95 % with few subjects" in said
    assert not list(tmp_path.glob("*.tmp"))


def test_class_delta_figure_draws_the_chosen_conditions():
    import matplotlib.pyplot as plt

    from emg_lens.studies import StudyResult, StudySpec
    from emg_lens.studies.ablation.plots import class_deltas

    spec = StudySpec.from_dict(
        {"name": "t", "models": "x", "interventions": [{"name": "uni", "edges": "unimodal"}]}
    )
    result = StudyResult.from_table(spec, _with_class_counts())
    fig = class_deltas(result, ["k1", "k2"], class_names={0: "kept", 1: "dropped"})
    bars = [p for p in fig.axes[0].patches if p.get_height() != 0]
    assert sorted(round(b.get_height()) for b in bars) == [-60, -60]  # class 1: 0.8 -> 0.2
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["kept", "dropped"]
    plt.close(fig)
    default = class_deltas(result, top=2)
    assert len(default.legends[0].get_texts()) == 2
    plt.close(default)
    # the checkpoints' labels by default, and a marked group shaded behind its classes
    result.class_labels = ("13 wrist flexion", "14 wrist extension")
    result.marked_classes = {"planted": [1]}
    fig = class_deltas(result, top=1)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(result.class_labels)
    (band,) = [p for p in ax.patches if p.get_label() == "planted"]
    left, right = band.get_x(), band.get_x() + band.get_width()
    assert left < 1 < right and right - left < 1  # behind class 1 alone
    assert "planted" in [t.get_text() for t in fig.legends[0].get_texts()]
    plt.close(fig)
    with pytest.raises(ArgumentError, match="not in this study"):
        class_deltas(result, ["nope"])


def test_the_class_delta_figure_of_many_classes_stays_a_page_wide():
    """DB2's 49 gestures under 3 conditions drew a 53-inch figure; it is 20 at most, every
    bar drawn."""
    import matplotlib.pyplot as plt

    from emg_lens.studies import StudyResult, StudySpec
    from emg_lens.studies.ablation.plots import class_deltas

    table = _per_subject()
    masked = table["intervention"] != "baseline"
    table["class_correct"] = [[9] * 48 + [2 if m else 8] for m in masked]
    table["class_total"] = [[10] * 49] * len(table)
    spec = StudySpec.from_dict(
        {"name": "t", "models": "x", "interventions": [{"name": "uni", "edges": "unimodal"}]}
    )
    fig = class_deltas(StudyResult.from_table(spec, table), top=3)
    assert fig.get_size_inches()[0] == 20.0
    assert len(fig.axes[0].get_xticklabels()) == 49
    plt.close(fig)


def test_tables_name_the_layer_set_of_multi_layer_conditions_and_the_correction(monkeypatch):
    from emg_lens.studies import StudyResult, StudySpec

    table = _with_class_counts()
    table.loc[table["mode"] == "all", "layers"] = "0,1,2"  # an all-layers condition
    spec = StudySpec.from_dict(
        {
            "name": "t",
            "models": "x",
            "interventions": [{"name": "uni", "edges": "unimodal"}],
            "stats": {"correction": "holm", "family": "all"},
        }
    )
    result = StudyResult.from_table(spec, table)
    wide = result.table3()
    assert set(wide.loc[wide["mode"] == "all", "layer"]) == {"0,1,2"}  # not blank
    markdown = result.to_markdown()
    assert "holm over all comparisons" in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| intervention"))
    assert "| layer | layers |" in header


def test_a_row_without_every_subject_compares_the_same_subjects_throughout():
    # Subject 3 has no value under k1: its Δ% is over subjects 1, 2 and 4 on both sides, as its
    # interval is, so the point lies inside its own interval
    table = _per_subject()
    table = table[~((table["key"] == "k1") & (table["subject"] == 3))]
    row = summarize(table, StatsSpec()).set_index("key").loc["k1"]
    base = dict(zip([1, 2, 3, 4], BASE, strict=True))
    masked = dict(zip([1, 2, 3, 4], CONDITIONS[0][4], strict=True))
    kept = [1, 2, 4]
    expected = np.mean([base[s] for s in kept])
    assert row["n"] == 3 and row["baseline"] == pytest.approx(expected, rel=1e-12)
    masked_mean = np.mean([masked[s] for s in kept])
    assert row["delta_pct"] == pytest.approx(100 * (masked_mean / expected - 1), rel=1e-12)
    assert row["ci_low"] <= row["delta_pct"] <= row["ci_high"]


@pytest.mark.parametrize("digits", [2, 3, 4])
def test_a_printed_p_never_reaches_a_star_threshold_it_lies_below(digits):
    """A p just below 0.05, 0.01, 0.001 or 0.0001 is printed below it (0.0496 was "0.05" at
    2 digits, beside "*" and "0.05 < 0.05" in a verdict); every other p as it rounds."""
    from emg_lens.stats.compare import STAR_LEVELS, format_p

    for threshold, _ in STAR_LEVELS:
        for p in np.linspace(threshold * 0.98, threshold, 2001)[:-1]:
            assert float(format_p(p, digits)) < threshold, (p, format_p(p, digits))
        assert format_p(threshold, digits) == f"{threshold:g}"
    assert format_p(0.0123, 2) == "0.012" and format_p(0.051, 2) == "0.051"


def test_an_infinite_value_is_refused_by_name_and_nan_stays_no_value():
    """Issue 86: `tost` left ±inf out as if it were NaN (a missing value), so a subject whose
    Δ% was infinite vanished from a test silently. An infinity is refused, naming the function
    and where it lies; NaN still means "no value" and is left out (documented)."""
    from emg_lens.errors import InputShapeError

    for call, name in (
        (lambda x: tost(x, 5.0), "tost(values)"),
        (lambda x: t_interval(x), "t_interval(values)"),
        (lambda x: skew_t_interval(x), "skew_t_interval(values)"),
        (lambda x: compare(x, [1.0, 2.0, 3.0]), "compare(masked)"),
        (lambda x: compare([1.0, 2.0, 3.0], x, "wilcoxon"), "compare(baseline)"),
    ):
        with pytest.raises(InputShapeError, match=rf"{re.escape(name)} holds inf at index 1"):
            call([1.0, np.inf, 2.0])
        with pytest.raises(InputShapeError, match="NaN for a missing value"):
            call([1.0, -np.inf, 2.0])
    assert tost([1.0, np.nan, 2.0, 1.5], 5.0) == tost([1.0, 2.0, 1.5], 5.0)  # NaN: no value


@pytest.mark.parametrize("bad", [[1.5, 0.1], [-0.1, 0.2], [0.1, np.inf]])
def test_correct_refuses_a_p_value_outside_zero_to_one(bad):
    """Issue 86: ``correct([1.5, -0.1])`` returned ``[1.0, -0.2]``."""
    from emg_lens.errors import InputShapeError

    with pytest.raises(InputShapeError, match=r"correct\(pvalues\)\[\d\] = .* is no p-value"):
        correct(bad)


@pytest.mark.parametrize("floor", [1.0, 3.5])
def test_a_skew_floor_moves_each_bound_out_by_the_cornish_fisher_term_and_tost_inverts_it(floor):
    """Issue 86: a claim assumes a skewness of at least SKEW_FLOOR either way. On symmetric
    values each end of the interval is the mean ∓ (t + γ(2t² + 1) / (6√n)) · sd / √n, wider
    than Student's; TOST under the same floor rejects at 5 % exactly when that interval lies
    within the bound, and its p is monotone in the bound."""
    x = np.array([-3.0, -1.0, 0.0, 1.0, 3.0, -2.0, 2.0])
    n, sd = len(x), x.std(ddof=1)
    t = sps.t.ppf(0.95, n - 1)
    half = (t + floor * (2 * t**2 + 1) / (6 * np.sqrt(n))) * sd / np.sqrt(n)
    low, high = skew_t_interval(x, 0.9, skew_floor=floor)
    assert (low, high) == pytest.approx((-half, half))
    assert high - low > np.diff(t_interval(x, 0.9))[0]
    ps = [tost(x, b, skew_floor=floor) for b in np.linspace(0.5, 6, 40)]
    assert (np.diff(ps) <= 0).all()
    for b in np.linspace(0.5, 6, 40):
        assert (tost(x, b, skew_floor=floor) < 0.05) == (-b < low and high < b)


def test_smallest_p_needs_a_subject():
    with pytest.raises(SpecError, match=r"smallest_p needs n >= 1 subjects, got 0"):
        smallest_p(0)
