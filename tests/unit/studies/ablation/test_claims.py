"""Claims a study file declares (`emg_lens.studies.ablation.claims`, issue 41 item 2, issue 46 item
2; tested by `emg_lens.studies.ablation.verdicts`): every field refused by name when the study
could not test it; the verdicts on synthetic class counts, tested as the design is (the same
subjects twice: paired, the exact sign-flip test by default). A collapse is a significant drop
after the study's correction, and a drop claim fails only on evidence that any drop is smaller
than its margin; "keeps its accuracy" is an equivalence claim, TOST on the per-subject changes
(its 90 % t-interval within ±margin), never "no significant change", which calls a consistent
-0.5 % significant with enough subjects and any change "ns" with too few. Simulated: a keep
claim whose true change is on its margin holds at most 5 % of the time at 2-12 subjects. A run
writes claims.csv and a Claims section at the top of summary.md and report.html, each claim
naming the test that decided it; `study check` lists them and what they need; the demo's study
declares exactly the planted claims."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pandas as pd
import pytest

from emg_lens import EncoderConfig
from emg_lens.cli import main
from emg_lens.errors import ArgumentError, SpecError, StudyError
from emg_lens.stats.compare import (
    KEEP_MIN_SUBJECTS,
    SKEW_FLOOR,
    compare,
    skew_t_interval,
    t_interval,
)
from emg_lens.stats.units import bootstrap_delta_ci
from emg_lens.studies import load_spec, run_study, summarize
from emg_lens.studies.ablation.claims import Claim
from emg_lens.studies.ablation.summary import legend
from emg_lens.studies.ablation.verdicts import (
    CI_LEVEL,
    CLAIM_COLUMNS,
    evaluate_claims,
    interval_verdict,
)
from tests.tiny import tiny_subject

BASE = np.array([0.99, 1.0, 0.995, 1.0, 0.98, 1.0, 0.99, 0.995])
STUDY = {
    "name": "claims",
    "models": "unused",
    "interventions": [
        {"name": "cross", "edges": "cross_modal"},
        {"name": "zero", "zero_modality": "acc"},
    ],
    "layers": {"modes": ["individual", "all"]},
    "class_groups": {"pair": [0, 1]},
}
DROP = {"intervention": "cross", "layers": "all", "classes": "pair", "expect": "drop"}
KEEP = {"intervention": "cross", "layers": "all", "classes": [2], "expect": "keep", "margin": 0.05}


def _spec(*claims, **changes):
    return load_spec({**STUDY, **changes, "claims": list(claims)})


# ----------------------------------------------------------------------------- the file


def test_claims_read_back_and_leave_the_studys_identity_alone():
    spec = _spec(DROP, KEEP, {**DROP, "margin": 0.1})
    assert load_spec(spec.to_dict()) == spec
    assert [c.expected for c in spec.claims] == [
        *("significant drop", "Δ% within ±5%", "significant drop")
    ]
    assert [c.bound for c in spec.claims] == [5, 5, 10]  # a drop's margin: 5 % unless named
    # claims are read from the cells, so declaring them (and the test that decides them)
    # reuses a finished study's store
    assert spec.fingerprint() == load_spec(STUDY).fingerprint()
    paper = _spec(DROP, stats={"claims_test": "mannwhitneyu"})
    assert paper.stats.claims_test == "mannwhitneyu" and load_spec(paper.to_dict()) == paper
    assert paper.fingerprint() == load_spec(STUDY).fingerprint()
    assert "claims" not in load_spec(STUDY).to_dict()
    assert "claims_test" not in load_spec(STUDY).to_dict().get("stats", {})
    with pytest.raises(SpecError, match=r"stats.claims_test = 'ttest'; accepted: \['paired'"):
        _spec(DROP, stats={"claims_test": "ttest"})


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            {"intervention": "uni"},
            r"intervention = 'uni' is not an intervention.*\['cross', 'zero'\]",
        ),
        ({"layers": "from_first 1"}, r"mode 'from_first' is not in the study's layers.modes"),
        ({"layers": "every"}, r"layers = 'every'; accepted: 'all', 'input'"),
        ({"layers": "individual"}, r"layers = 'individual'; accepted"),
        (
            {"layers": "input"},
            r"acts on layers; mode 'input' is not in the study's layers.modes \['individual'",
        ),
        ({"intervention": "zero"}, r"ablates an input \(zero_modality\).*layers = 'input'"),
        ({"layers": "explicit 0,1"}, r"mode 'explicit' is not in the study's layers.modes"),
        ({"classes": "interaction"}, r"classes = 'interaction' is not 'all' or a name.*\['pair'\]"),
        ({"classes": []}, r"classes = \[\]; accepted"),
        ({"classes": [1, 1]}, r"classes repeats 1"),
        ({"classes": [-1]}, r"classes \(class indices\) must be a list of non-negative .*\[-1\]"),
        ({"expect": "same"}, r"expect = 'same'; accepted: 'drop'"),
        ({"margin": 0}, r"margin must be a number in \(0, 1\] \(a 'drop'.*got 0$"),
        ({"margin": "5%"}, r"margin must be a number in \(0, 1\] \(a 'drop'.*got '5%'$"),
        ({"expect": "keep"}, r"margin must be a number in \(0, 1\] \(a 'keep'.*got None$"),
        (
            {"expect": "keep", "margin": 0},
            r"margin must be a number in \(0, 1\] \(a 'keep'.*got 0$",
        ),
        (
            {"expect": "keep", "margin": 5},
            r"margin must be a number in \(0, 1\] \(a 'keep'.*got 5$",
        ),
        (
            {"expect": "keep", "margin": True},
            r"margin must be a number in \(0, 1\] \(a 'keep'.*got True$",
        ),
        ({"expcet": "drop"}, r"unknown key\(s\) \['expcet'\] in \[claims\[0\]\]"),
        ({"classes": None}, r"claims\[0\] needs 'classes'"),
    ],
)
def test_a_claim_the_study_cannot_test_is_refused_by_name(change, match):
    with pytest.raises(SpecError, match=match):
        _spec({**DROP, **change})


def test_layers_heads_and_groups_are_checked_against_the_study():
    with pytest.raises(SpecError, match=r"layer 3 is not in the study's layers.layers \[0, 1\]"):
        _spec(
            {**DROP, "layers": "individual 3"}, layers={"modes": ["individual"], "layers": [0, 1]}
        )
    explicit = {"modes": ["explicit"], "explicit": [[1, 0]]}
    assert _spec({**DROP, "layers": "explicit 0, 1"}, layers=explicit).claims[0].layer == (0, 1)
    with pytest.raises(SpecError, match=r"is not one of the study's layers.explicit \[\[0, 1\]\]"):
        _spec({**DROP, "layers": "explicit 0"}, layers=explicit)
    with pytest.raises(SpecError, match="needs heads: the study has 2 head sets"):
        _spec(DROP, heads=["all", [0]])
    assert _spec({**DROP, "heads": [0]}, heads=["all", [0]]).claims[0].heads == (0,)
    with pytest.raises(SpecError, match="name 'all' is not an identifier other than 'all'"):
        _spec(DROP, class_groups={"all": [0]})
    with pytest.raises(SpecError, match=r"class_groups.pair = 'x'; accepted: a list"):
        _spec(DROP, class_groups={"pair": "x"})
    with pytest.raises(SpecError, match="claims must be a list of"):
        load_spec({**STUDY, "claims": DROP})


# ----------------------------------------------------------------------------- verdicts


def _counts(masked, baseline, total: int = 1000) -> pd.DataFrame:
    """Class counts of one class (index 0) whose per-subject accuracy is ``baseline`` and,
    under the ``cross · all`` condition, ``masked`` (``total`` windows per subject)."""
    rows = []
    for s, (m, b) in enumerate(zip(masked, baseline), 1):
        for name, mode, layers, accuracy in (
            ("baseline", "none", "", b),
            ("cross", "all", "0,1", m),
        ):
            rows.append(
                {
                    "subject": s, "intervention": name, "mode": mode, "layer": None,
                    "layers": layers, "heads": "all", "key": name,
                    "class_correct": [round(accuracy * total)], "class_total": [total],
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def _verdict(expect, masked, baseline, claims_test="paired", **claim):
    spec = _spec({**DROP, "classes": [0], "expect": expect, **claim})
    counts = _counts(masked, baseline)
    table = evaluate_claims(
        spec.claims, {}, counts, "mannwhitneyu", "bonferroni", claims_test=claims_test
    )
    assert list(table.columns) == CLAIM_COLUMNS
    return table.iloc[0]


def _pct(masked, baseline, total: int = 1000):
    """Per-subject Δ% as the class counts hold the accuracies."""
    m, b = (np.round(np.asarray(x) * total) / total for x in (masked, baseline))
    return 100 * (m - b) / b


def test_eight_of_eight_subjects_losing_five_points_make_a_drop_hold():
    """The issue's case: each subject loses 5 points. Paired, all 8 differences have one
    sign, so the exact sign-flip p is 2 / 2**8; as two samples (Mann-Whitney U) the subjects'
    spread hides the drop."""
    rng = np.random.default_rng(0)
    base = np.linspace(0.80, 0.98, 8)
    masked = base - 0.05 + rng.normal(0, 0.003, 8)
    row = _verdict("drop", masked, base)
    assert row.test == "permutation" and row.p == pytest.approx(2 / 256) == row.p_corr
    assert row.stars == "**" and row.verdict == "holds", row.reason
    assert row.method.startswith("exact sign-flip test over 8 subjects (paired")
    assert "p_corr = 0.0078 < 0.05 and the accuracy fell" in row.reason
    unpaired = _verdict("drop", masked, base, claims_test="mannwhitneyu")
    assert unpaired.p > 0.2 and unpaired.verdict == "cannot tell"  # not "fails": -5 % is no 0
    assert "reaches below -5%" in unpaired.reason and "Mann–Whitney U" in unpaired.method


def test_a_drop_claim_on_unchanged_subjects_fails():
    """No drop, and the interval shows any drop is smaller than the margin: evidence of
    absence, so "fails". With its margin narrower than that interval: cannot tell."""
    rng = np.random.default_rng(1)
    base = np.linspace(0.80, 0.98, 8)
    masked = base + rng.normal(0, 0.004, 8)
    row = _verdict("drop", masked, base)
    assert row.p_corr >= 0.05 and -5 < row.ci_low < 0 < row.ci_high < 5
    assert row.verdict == "fails" and "lies wholly above -5%" in row.reason
    narrow = _verdict("drop", masked, base, margin=0.001)
    assert narrow.verdict == "cannot tell" and "reaches below -0.1%" in narrow.reason


def test_a_rise_fails_and_a_drop_too_few_subjects_could_show_cannot_tell():
    low, high = 0.25 + np.linspace(0, 0.02, 8), 0.6 + np.linspace(0, 0.02, 8)
    assert _verdict("drop", low, high).verdict == "holds"
    rise = _verdict("drop", high, low)
    assert rise.p_corr < 0.05 and rise.verdict == "fails" and "significant rise" in rise.reason
    two = _verdict("drop", low[:2], high[:2])  # the sign-flip floor with 2 subjects: 0.5
    assert two.p == 0.5 and two.verdict == "cannot tell"
    assert "smallest p_corr this test can reach is 0.5" in two.reason
    assert _verdict("keep", [0.99], [0.99], margin=0.05).verdict == "cannot tell"
    assert _verdict("drop", [0.2], [0.9]).verdict == "cannot tell"


@pytest.mark.parametrize("claims_test", ["paired", "wilcoxon", "mannwhitneyu"])
def test_a_tiny_consistent_drop_is_significant_and_still_keeps_the_accuracy(claims_test):
    base = np.ones(8)  # the controls at ceiling, as on the demo
    masked = base - np.linspace(0.003, 0.007, 8)
    assert _verdict("drop", masked, base, claims_test).p < 0.05  # "no change" would call it lost
    row = _verdict("keep", masked, base, claims_test, margin=0.05)  # TOST whatever the test
    assert row.test == "tost" and row.p < 0.05 and -1 < row.ci_low < row.ci_high < 0
    interval = skew_t_interval(_pct(masked, base), 0.9, skew_floor=SKEW_FLOOR)
    assert (row.ci_low, row.ci_high) == pytest.approx(interval)
    assert row.verdict == "holds" and "lies within ±5%" in row.reason
    assert row.method.startswith("TOST (Schuirmann 1987) with Johnson's skew-corrected t")


def test_a_drop_past_the_margin_fails_whatever_its_p_value():
    row = _verdict("keep", BASE * 0.9, BASE, margin=0.05)
    assert row.delta_pct == pytest.approx(-10, abs=0.1)
    assert row.verdict == "fails" and "wholly outside ±5%" in row.reason


def test_keeping_needs_the_whole_interval_within_the_margin_not_only_the_mean():
    """A mean change of -2 % whose interval reaches past -5 % shows neither that the
    accuracy was kept nor that it was lost: two subjects of eight lost a fifth of it."""
    base = BASE * 0.9
    masked = base.copy()
    masked[:2] -= 0.2
    masked[2:] += 0.04
    row = _verdict("keep", masked, base, margin=0.05)
    assert row.ci_low < -5 < row.delta_pct < 0 < row.ci_high
    assert row.delta_pct == pytest.approx(_pct(masked, base).mean())  # the subjects' mean
    assert row.verdict == "cannot tell" and "reaches past ±5%" in row.reason


@pytest.mark.parametrize(
    ("base", "masked"),
    [
        ([0.92, 0.85], [0.89, 0.87]),  # -3 and +2 points
        ([0.92, 0.85, 0.95], [0.88, 0.88, 0.94]),  # -4, +3 and -1 points
    ],
)
def test_keep_claims_over_two_or_three_subjects_cannot_tell(base, masked):
    """Changes of a few points either way, as subjects give them: TOST cannot show them
    within ±5 % with 2 or 3 subjects. The percentile bootstrap the claims used before spans
    only the subjects' own range here, and called it kept."""
    row = _verdict("keep", masked, base, margin=0.05)
    assert row.verdict == "cannot tell" and "may spread (SD) at most" in row.reason
    low, high = bootstrap_delta_ci(masked, base)
    assert -5 <= low <= high <= 5  # the old rule: "holds"


@pytest.mark.slow
def test_keep_claims_on_their_margin_hold_at_most_five_percent_of_the_time():
    """Simulated (seeded, 1000 draws per size): every subject's true change is exactly the
    margin, -5 %, the subjects spreading by 2 points. A keep claim is a 5 % equivalence test,
    so it may hold at most 5 % of the time at any number of subjects (the percentile bootstrap
    the claims used before: 21 % at 2 subjects, 12-14 % at 3). Each size's share is checked
    against 5 % plus 2.6 standard errors of 1000 draws, all 11 000 together against 5.5 %. A
    drop claim whose true drop is its margin likewise fails (interval wholly above -5 %) at
    most 5 % of the time; and a keep holds nearly always when nothing changed."""
    rng = np.random.default_rng(46)
    held, failed = [], []
    for n in range(2, 13):
        pct = -5 + rng.normal(0, 2, (1000, n))
        intervals = [skew_t_interval(row, CI_LEVEL) for row in pct]
        held.append([interval_verdict("keep", lo, hi, 5.0) == "holds" for lo, hi in intervals])
        failed.append([interval_verdict("drop", lo, hi, 5.0) == "fails" for lo, hi in intervals])
    held, failed = np.mean(held, axis=1), np.mean(failed, axis=1)
    assert (held <= 0.068).all() and held.mean() <= 0.055, held
    assert (failed <= 0.068).all() and failed.mean() <= 0.055, failed
    unchanged = rng.normal(0, 2, (400, 8))
    kept = [interval_verdict("keep", *skew_t_interval(r, CI_LEVEL), 5.0) for r in unchanged]
    assert np.mean([v == "holds" for v in kept]) > 0.9


@pytest.mark.parametrize("n", [2, 3, 5, 7, 8])
def test_no_change_is_concluded_on_fewer_than_eight_unchanged_subjects(n):
    """Issue 56, item 2: attention cuts often leave a subject's accuracy exactly unchanged
    while they change others a lot. Two unchanged subjects gave "keep holds, TOST p < 1e-16";
    with 70 % of subjects unchanged and the rest losing everything, every one of n subjects is
    unchanged in 0.7^n of studies (49 / 34 / 17 / 8 % at 2 / 3 / 5 / 7). So from subjects that
    all changed alike neither a keep holds nor a drop fails (the effect absent) below
    `KEEP_MIN_SUBJECTS` subjects; at 8, all unchanged over 1000 windows each, both do."""
    unchanged = np.full(n, 0.9)
    keep, drop = (
        _verdict("keep", unchanged, unchanged, margin=0.05),
        _verdict("drop", unchanged, unchanged),
    )
    if n < KEEP_MIN_SUBJECTS:
        assert keep.verdict == "cannot tell" and drop.verdict == "cannot tell"
        assert f"no change is concluded from no spread on fewer than 8 subjects ({n} here)" in (
            keep.reason
        )
        assert "every subject changed alike (no spread)" in drop.reason
    else:
        assert keep.verdict == "holds" and drop.verdict == "fails"
    assert keep.floor_unit == "window" and keep.sd_floor == pytest.approx(100 / (1000 * 0.9))


def _trial_counts(n_subjects: int, trials: int, changed: dict[int, int]) -> pd.DataFrame:
    """Cells of one class with ``trials`` test trials of 10 windows each per subject, all
    right at baseline; under the cut, subject s loses ``changed[s]`` whole trials."""
    rows = []
    for s in range(1, n_subjects + 1):
        for name, mode, lost in (("baseline", "none", 0), ("cross", "all", changed.get(s, 0))):
            hits = [0] * lost + [10] * (trials - lost)
            rows.append(
                {
                    "subject": s, "intervention": name, "mode": mode, "layer": None,
                    "layers": "0,1" if lost or name == "cross" else "", "heads": "all",
                    "key": name, "class_correct": [sum(hits)], "class_total": [10 * trials],
                    "trial_class": [0] * trials, "trial_windows": [10] * trials,
                    "trial_hits": hits,
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_a_subjects_spread_is_never_below_the_change_one_of_its_trials_makes():
    """A subject unchanged over T test trials is known to about one trial's change, 100 / T
    % at a baseline accuracy of 1, not to ±0. Eight subjects of 4 trials each, none changed:
    each subject's Δ% has a floor of 25 points, the 90 % interval is ±31.7 % (the assumed skew
    widens it from Student's ±16.8 %), and a ±5 % keep
    cannot tell; with 100 trials each (a floor of 1 point) it holds. One subject of eight
    losing every trial (-12.5 % on average) fails the keep."""
    claim = _spec({**KEEP, "classes": [0]}).claims
    few = evaluate_claims(claim, {}, _trial_counts(8, 4, {}), "mannwhitneyu", "bonferroni")
    assert few.floor_unit[0] == "trial" and few.sd_floor[0] == pytest.approx(25.0)
    floored = skew_t_interval([0.0] * 8, CI_LEVEL, 25.0, skew_floor=SKEW_FLOOR)
    assert few.ci_high[0] == pytest.approx(floored[1])
    assert few.verdict[0] == "cannot tell" and few.ci_high[0] > 16
    many = evaluate_claims(claim, {}, _trial_counts(8, 100, {}), "mannwhitneyu", "bonferroni")
    assert many.sd_floor[0] == pytest.approx(1.0) and many.verdict[0] == "holds"
    lost = evaluate_claims(claim, {}, _trial_counts(8, 100, {3: 100}), "mannwhitneyu", "none")
    assert lost.delta_pct[0] == pytest.approx(-12.5) and lost.verdict[0] != "holds"


def test_drop_claims_are_one_correction_family_and_keep_claims_stay_out_of_it():
    low, high = 0.25 + np.linspace(0, 0.02, 6), 0.6 + np.linspace(0, 0.02, 6)
    counts = _counts(low, high)
    one = {**DROP, "classes": [0]}
    keep = {**one, "expect": "keep", "margin": 0.5}
    claims = _spec(one, {**one, "description": "again"}, keep).claims
    table = evaluate_claims(claims, {}, counts, "mannwhitneyu", "bonferroni")
    assert table.p[0] == compare(low, high, "permutation")[1] == 2 / 64  # paired by default
    assert table.p_corr[0] == pytest.approx(2 * table.p[0])  # m = 2: the keep claim is no test
    assert np.isnan(table.p_corr[2]) and table.stars[2] == ""
    assert table.method[0].endswith("bonferroni over 2 drop claims")
    alone = evaluate_claims(claims[:1], {}, counts, "mannwhitneyu", "bonferroni")
    assert alone.p_corr[0] == alone.p[0]
    with pytest.raises(SpecError, match=r"claims_test = 'ttest'; accepted: \['paired'"):
        evaluate_claims(claims, {}, counts, "mannwhitneyu", "none", claims_test="ttest")


def test_a_drop_claim_without_a_p_leaves_the_family_and_the_method_says_so():
    # issue 57 item 8: a claim with a NaN p left the correction while `method` said "over 3"
    low, high = 0.25 + np.linspace(0, 0.02, 6), 0.6 + np.linspace(0, 0.02, 6)
    counts = _counts(low, high)
    lone = counts[(counts.subject == 1) & (counts.key == "cross")]  # one subject: no test
    lone = lone.assign(intervention="zero", key="zero", mode="input", layers="")
    one = {**DROP, "classes": [0]}
    claims = _spec(
        one, {**one, "description": "again"}, {**one, "intervention": "zero", "layers": "input"}
    ).claims
    table = evaluate_claims(
        claims, {}, pd.concat([counts, lone], ignore_index=True), "mannwhitneyu", "bonferroni"
    )
    assert np.isnan(table.p[2]) and np.isnan(table.p_corr[2]) and table.n[2] == 1
    assert table.p_corr[0] == pytest.approx(2 * table.p[0])  # corrected over the two with a p
    assert table.method[0].endswith("bonferroni over 2 drop claims")
    assert "with 6 subjects and 2 drop claim(s)" in table.reason[0]
    assert table.method[2].endswith("no p-value, so outside the correction")


def test_above_twelve_subjects_the_paired_test_is_wilcoxons():
    base = 0.8 + np.linspace(0, 0.15, 14)
    row = _verdict("drop", base - 0.05 - np.linspace(0, 0.026, 14), base)  # no tied |Δ|
    assert row.test == "wilcoxon" and row.p == pytest.approx(2 / 2**14)
    assert row.method.startswith("Wilcoxon signed-rank test over 14 subjects (paired)")


@pytest.mark.parametrize(  # all 13 changed: "paired" is wilcoxon's 1 s of 2**13 patterns again
    ("claims_test", "changed"),
    [
        (t, c)
        for t in ("paired", "wilcoxon", "permutation")
        for c in (0, 1, 13)
        if t + str(c) != "paired13"
    ],
)
def test_a_drop_claim_over_13_subjects_takes_none_one_or_all_changed_alike(claims_test, changed):
    # Quantised accuracies: `changed` of 13 subjects lose 0.1 and the rest are exactly
    # unchanged. One changed subject crashed scipy's wilcoxon (the default test above 12
    # subjects), and `study run` with it; its two signs are equally likely: p = 1.
    base = np.full(13, 0.8)
    masked = base - 0.1 * (np.arange(13) < changed)
    row = _verdict("drop", masked, base, claims_test)
    assert row.n == 13 and row.p == compare(masked, base, claims_test)[1]
    if changed < 2:
        assert row.p == 1.0 and row.verdict != "holds"
    else:
        assert row.p < 0.001 and row.verdict == "holds"


def test_a_claim_beyond_the_models_is_refused_by_name():
    counts = _counts([0.2, 0.3], [0.9, 0.8])
    spec = _spec({**DROP, "classes": [0, 3]})
    with pytest.raises(SpecError, match=r"claims\[0\].classes: class index 3 is out of range"):
        evaluate_claims(spec.claims, {}, counts, "mannwhitneyu", "bonferroni")
    spec = _spec({**DROP, "classes": [0], "layers": "individual 7"})
    with pytest.raises(SpecError, match=r"matches no condition.*\['all'\]"):
        evaluate_claims(spec.claims, {}, counts, "mannwhitneyu", "bonferroni")
    counts["class_total"] = [[0]] * len(counts)  # no window of the class: nothing to test
    with pytest.raises(StudyError, match="subject 1 has no test window of classes"):
        evaluate_claims(_spec({**DROP, "classes": [0]}).claims, {}, counts, "mannwhitneyu", "none")


# ----------------------------------------------------------------------------- a run


@pytest.mark.slow
def test_a_study_with_claims_writes_claims_csv_and_puts_them_first(tmp_path):
    subjects = {s: tiny_subject(s, 16, subject=s, perturb=True) for s in range(1, 4)}
    claims = [
        # classes these tiny models score (none of 0-2): each subject has a Δ% (issue 86)
        {**DROP, "classes": [2, 3], "description": "the <pair> drops"},
        {**KEEP, "layers": "individual 0"},
        {"intervention": "zero", "layers": "input", "classes": "all", "expect": "keep",
         "margin": 1.0},
    ]  # fmt: skip
    result = run_study(_spec(*claims), models=subjects, out_dir=tmp_path, progress=False)
    table = pd.read_csv(tmp_path / "claims.csv")
    assert list(table.columns) == CLAIM_COLUMNS and len(table) == 3
    assert set(table.verdict) <= {"holds", "fails", "cannot tell"}
    # the accuracy of a claim's classes, from the per-class table every run writes
    per_class = result.per_class()
    pair = per_class[per_class["class"].isin([2, 3]) & (per_class.intervention == "baseline")]
    by_subject = pair.groupby("subject")[["correct", "total"]].sum()
    assert table.baseline[0] == pytest.approx((by_subject.correct / by_subject.total).mean())
    assert table.condition.tolist() == [
        "cross · all (layers 0,1)", "cross · individual 0 (layers 0)", "zero · input",
    ]  # fmt: skip
    summary = (tmp_path / "summary.md").read_text()
    assert summary.index("## Claims") < summary.index("Baseline accuracy")
    assert "the &lt;pair&gt; drops" in summary  # escaped: a study file writes no HTML there
    report = (tmp_path / "report.html").read_text()
    assert "the &lt;pair&gt; drops" in report and "<pair>" not in report
    assert report.index(">Claims<") < report.index("Baseline accuracy")
    # each claim says which test decided it, in every output
    console = result.console()
    assert "Claims over 3 subjects, each with the test that decided it:" in console
    assert "exact sign-flip test over 3 subjects (paired, all 8 relabellings)" in console
    assert table.method[1].startswith("TOST (Schuirmann 1987) with Johnson's skew-corrected t")
    assert table.test.tolist() == ["permutation", "tost", "tost"]
    assert "| exact sign-flip test over 3 subjects" in summary and "| TOST (Schuirmann" in summary
    # the key to the stars and r_rb (issue 59): below the claims' table, in every output
    key = legend(markdown=True)
    escaped = summary.index("| the &lt;pair&gt; drops")
    assert escaped < summary.index(key) < summary.index("## Results")
    assert console.endswith(legend()) and "<code>****</code> &lt; 0.0001" in report
    assert "r_rb: the rank-biserial correlation" in report


def test_study_check_lists_the_claims_and_refuses_a_class_the_models_lack(tmp_path, capsys):
    from emg_lens.checkpoints import save_checkpoint
    from emg_lens.models import IsoNet

    study = tmp_path / "study.toml"
    text = textwrap.dedent(
        f"""
        name = "s"
        models = "{tmp_path / "m"}"
        [[interventions]]
        name = "cross"
        edges = "cross_modal"
        [layers]
        modes = ["all"]
        [class_groups]
        pair = [0, {{last}}]
        [[claims]]
        intervention = "cross"
        layers = "all"
        classes = "pair"
        expect = "drop"
        """
    )
    study.write_text(text.format(last=1))
    # no models: no class count to check, and `study run` would stop (non-zero)
    assert main(["study", "check", str(study)]) == 2
    out = capsys.readouterr().out
    assert "claims, tested after the run" in out and "pair (0,1)  significant drop" in out
    # what the claims need, before the run: 2 / 2**n < 0.05 from 6 subjects on
    assert "1 drop claim(s), paired test (the exact sign-flip test up to 12 subjects), " in out
    assert "p_corr < 0.05 needs at least 6 subjects" in out
    keep = '\n[[claims]]\nintervention = "cross"\nlayers = "all"\nclasses = [0]\nexpect = "keep"\n'
    study.write_text(text.format(last=1) + keep + "margin = 0.05\n")
    for s in (1, 2, 3):
        save_checkpoint(IsoNet(EncoderConfig.preset("tiny")), tmp_path / "m" / f"subject_{s}")
    assert main(["study", "check", str(study)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "with 3 the smallest p_corr is 0.25 (ns)" in out
    # issue 86: the keep's test is the skew-corrected t, not Student's
    assert (
        "1 keep claim(s), TOST (90% skew-corrected t-interval of per-subject Δ%, Johnson's" in out
    )
    assert "the changes taken as skewed at least 5 either way): at least 2 subjects; " in out
    assert (
        "with 3, a keep can hold only if the per-subject Δ% spread (SD) stays below about 0.7 "
        in out
    )
    assert "(no spread) on fewer than 8." in out  # issue 56: no spread is no evidence
    study.write_text(text.format(last=4))  # the tiny preset has 4 classes
    assert main(["study", "check", str(study)]) == 2
    assert "class index 4 is out of range: the models have 4 classes" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the demo


def test_the_demo_study_declares_exactly_the_planted_claims():
    from emg_lens.cli.demo import DEMO_STUDY
    from emg_lens.data.synthetic.emg_acc import demo_setup, gesture_kinds
    from emg_lens.studies.ablation.planted import kind_groups, planted_claims

    spec = load_spec(DEMO_STUDY)
    kinds = gesture_kinds(demo_setup()[0])
    groups = kind_groups(kinds, sorted(kinds))
    assert dict(spec.class_groups) == {k: tuple(v) for k, v in groups.items()}
    assert spec.claims == planted_claims(groups)


def test_the_readmes_claims_example_is_the_demo_studys():
    """The guide's "Claims" (docs/guide/studies.md) shows `[[claims]]` as the demo study
    declares them."""
    from emg_lens.cli.demo import DEMO_STUDY
    from tests.docs_pages import section

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    (example,) = re.findall(r"```toml\n(.*?)```", section("## Claims"), flags=re.S)
    demo = load_spec(DEMO_STUDY)
    shown = load_spec({**demo.to_dict(), **tomllib.loads(example)})
    assert shown.claims == demo.claims and shown.class_groups == demo.class_groups


def test_planted_findings_test_undeclared_claims_as_a_declaring_study_would():
    """A notebook's study that declares nothing (notebook 06): `planted_findings` builds the
    planted claims on its widest cut and tests them exactly as the run tests declared ones."""
    from emg_lens.studies.ablation.planted import format_findings, planted_claims, planted_findings

    subjects = {s: tiny_subject(s, 16, subject=s, perturb=True) for s in range(1, 4)}
    groups = {"interaction": [2, 3], "unimodal": [0, 1]}
    plain = {k: v for k, v in STUDY.items() if k != "class_groups"}
    result = run_study(load_spec(plain), models=subjects, progress=False)
    findings = planted_findings(result, groups)
    declared = load_spec({**plain, "class_groups": groups})
    declared = declared.with_changes(claims=[c.to_dict() for c in planted_claims(groups)])
    again = run_study(declared, models=subjects, progress=False).claims()
    pd.testing.assert_frame_equal(findings, again)
    text = format_findings(findings)
    assert text.startswith("Planted vs found (cross · all (layers 0,1): every cross-modal")
    assert text.count("  planted: ") == 2
    with pytest.raises(ArgumentError, match=r"intervention 'nope' is not in 'claims'; it has \["):
        planted_findings(result, groups, intervention="nope")
    with pytest.raises(ArgumentError, match=r"metric 'kl' is not one of this study's metrics"):
        result.of_metric("kl")
    masked = result.per_subject[result.per_subject["intervention"] != "baseline"]
    twice = pd.concat([result.per_subject, masked])
    with pytest.raises(ArgumentError, match=r"a \(condition key, subject\) pair holds more than"):
        summarize(twice, result.spec.stats)


@pytest.mark.unchecked  # a truth of the wrong type, refused by emg_lens's own check
def test_planted_groups_and_claims_name_what_they_miss():
    from emg_lens.studies.ablation.planted import claims_of, kind_groups, planted_claims

    with pytest.raises(ArgumentError, match=r"truth must be a PlantedEEG .* got str"):
        claims_of("eeg")
    with pytest.raises(ArgumentError, match=r"classes \[2\] have no gesture kind"):
        kind_groups({1: "emg"}, [1, 2])
    with pytest.raises(
        ArgumentError, match=r"planted findings need interaction and single-modality"
    ):
        kind_groups({1: "emg", 2: "acc"}, [1, 2])
    with pytest.raises(
        ArgumentError, match=r"groups must include \['unimodal'\]; got \['interaction'\]"
    ):
        planted_claims({"interaction": [0]})


def test_a_study_files_free_text_cannot_put_tables_or_headings_on_its_page(tmp_path):
    """A description with a table row and a heading, and a claim description with a line
    break, are text on the page: no forged table or heading, and every claim keeps its row."""
    subjects = {s: tiny_subject(s, 16, subject=s, perturb=True) for s in range(1, 4)}
    forged = "| p_corr | 0.0001 **** |\n|---|---|\n| forged | table |\n# Forged heading <!--"
    claim = {**DROP, "description": "the pair drops\n| injected | row |<table> & more"}
    spec = _spec(claim, {**KEEP, "layers": "individual 0"}, description=forged)
    run_study(spec, models=subjects, out_dir=tmp_path, progress=False)
    summary = (tmp_path / "summary.md").read_text()
    lines = summary.splitlines()
    assert (
        "Description: | p_corr | 0.0001 **** | |---|---| | forged | table | # Forged heading "
        "&lt;!--" in (lines)
    )  # a raw "<!--" hid the rest of summary.md on GitHub, a claim's "<table>" forged one
    assert "<!--" not in summary and "<table>" not in summary
    assert "the pair drops \\| injected \\| row \\|&lt;table&gt; &amp; more" in summary
    assert not any(line.startswith(("| forged", "# Forged", "| injected")) for line in lines)
    row = next(line for line in lines if line.startswith("| the pair drops"))
    assert row.count(" | ") == lines[lines.index(row) - 2].count(" | ")  # as many cells
    report = (tmp_path / "report.html").read_text()
    assert "<h2>Forged heading</h2>" not in report and "<td>forged</td>" not in report
    assert "# Forged heading &lt;!--" in report and "&lt;table&gt; &amp; more" in report


def test_an_in_memory_models_own_code_is_part_of_its_cells_provenance(tmp_path, monkeypatch):
    """A subclass defined in the user's file: editing the file changes the provenance its
    study cells are reused under; hooks left on a model are refused, not stored unrecorded."""
    import importlib
    import shutil
    import sys

    from emg_lens.studies.subjects import entry_provenance

    folder = tmp_path / "code"
    folder.mkdir()
    source = "from emg_lens.models import IsoNet\n\nclass MyNet(IsoNet):\n    SCALE = {}\n"
    (folder / "my_isonet.py").write_text(source.format(1))
    monkeypatch.syspath_prepend(str(folder))
    model, data = tiny_subject(1, 8, subject=1)
    mine = importlib.import_module("my_isonet").MyNet(model.cfg)
    mine.load_state_dict(model.state_dict())
    spec = _spec(DROP)
    before = entry_provenance(spec, (mine, data), 1, "code")
    assert before["model_code"] is not None
    (folder / "my_isonet.py").write_text(source.format(22))
    with pytest.raises(SpecError, match=r"MyNet.SCALE is 1 in the running code, 22 in .*reload"):
        entry_provenance(spec, (mine, data), 1, "code")
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)  # a same-size edit in the same
    # second would be read back from the bytecode cached for the old file
    edited = importlib.reload(sys.modules["my_isonet"]).MyNet(model.cfg)
    edited.load_state_dict(model.state_dict())
    assert entry_provenance(spec, (edited, data), 1, "code") != before
    sys.modules.pop("my_isonet", None)
    mine = edited
    mine.add_hook("blocks.0.hook_resid_pre", lambda x, hook: x, is_permanent=True)
    with pytest.raises(SpecError, match=r"hooks on blocks\.0\.hook_resid_pre"):
        entry_provenance(spec, (mine, data), 1, "code")


# ----------------------------------------------------------------------------- a verdict's reach


def _subgroup_counts(rng, n: int, trials: int = 20, windows: int = 10) -> pd.DataFrame:
    """Issue 78's design: 10 % of subjects lose 41-71 % of their right windows under the cut,
    the rest 1 %; each subject 20 test trials of 10 windows, baseline accuracy 0.8-0.95."""
    rows = []
    for s in range(1, n + 1):
        loss = rng.uniform(0.41, 0.71) if rng.uniform() < 0.1 else 0.01
        right = rng.uniform(size=(trials, windows)) < rng.uniform(0.8, 0.95)
        cut = right & (rng.uniform(size=right.shape) >= loss)
        for name, mode, layers, hits in (
            ("baseline", "none", "", right),
            ("cross", "all", "0,1", cut),
        ):
            per_trial = hits.sum(axis=1).tolist()
            rows.append(
                {
                    "subject": s, "intervention": name, "mode": mode, "layer": None,
                    "layers": layers, "heads": "all", "key": name,
                    "class_correct": [sum(per_trial)], "class_total": [trials * windows],
                    "trial_class": [0] * trials, "trial_windows": [windows] * trials,
                    "trial_hits": per_trial,
                }
            )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n", [4, 8, 15])
def test_a_keep_that_holds_says_what_its_subjects_could_not_have_seen(n):
    """Issue 78: an attention cut that costs a few subjects a lot is this field's usual shape;
    a keep over n subjects misses such a subgroup whenever none of them was drawn (0.9^n of
    studies), which no test of a mean can rule out. So every keep that holds states the share
    of subjects that could lose more than the margin unseen, 1 - 0.05^(1/n), and lists each
    subject's own change; a drawn subject whose own interval lies past the margin keeps the
    claim from holding, and is named."""
    claim = _spec({**KEEP, "classes": [0]}).claims
    rng = np.random.default_rng([78, n])
    share = f"up to {round(100 * (1 - 0.05 ** (1 / n)))}% that lose any amount"
    seen = {"holds": 0, "stopped": 0}
    for _ in range(25):
        row = evaluate_claims(claim, {}, _subgroup_counts(rng, n), "mannwhitneyu", "none").iloc[0]
        listed = row.subjects.split("; ")
        assert [entry.split()[0] for entry in listed] == [str(s) for s in range(1, n + 1)]
        losers = [int(s) for s in row.beyond_margin.split()]
        if row.verdict == "holds":
            seen["holds"] += 1
            assert share in row.reason and "no subject's own interval lies past" in row.reason
            assert not losers and row.unseen_share == pytest.approx(1 - 0.05 ** (1 / n))
        if losers:
            assert row.verdict != "holds"
            if row.ci_low >= -5 and row.ci_high <= 5:  # the mean alone would have held
                seen["stopped"] += 1
                assert f"subject {losers[0]} (" in row.reason or "subjects" in row.reason
    assert seen["holds"] > 0  # the design does let keeps hold: the check above ran


def test_a_keep_that_holds_says_how_large_a_moderate_subgroup_it_leaves_room_for():
    """Issue 86: a subgroup losing twice the margin was drawn and never flagged, beside "no
    subject's own change lies past the margin". Thirty subjects of 20 trials, 6 of them (20 %)
    losing 2 whole trials (-10 %), 4 one trial, the rest none: the keep holds, and its reason
    states the room its lower bound leaves (a share at least the 20 % drawn, losing 10 %; half
    that losing 20 %) and that one subject's own interval flags a loss only from well past
    10 %, so these subjects' losses were not within its sight."""
    claim = _spec({**KEEP, "classes": [0]}).claims
    lost = {s: 2 if s <= 6 else int(s <= 10) for s in range(1, 31)}
    row = evaluate_claims(claim, {}, _trial_counts(30, 20, lost), "mannwhitneyu", "none").iloc[0]
    assert row.verdict == "holds" and row.beyond_margin == ""
    room = -row.ci_low / 10
    assert room >= 0.2
    assert f"leaves room for up to {room:.0%} of subjects to lose 10% each" in row.reason
    assert f"or {room / 2:.0%} to lose 20%, the others unchanged" in row.reason
    flagged_from = float(row.reason.split("flags a loss only from about ")[1].split("%")[0])
    assert flagged_from > 10


def test_a_subject_past_the_margin_stops_a_keep_its_mean_would_let_hold():
    """Thirty subjects, one losing 1 of every 10 windows in each of its 100 trials (-10 %, its
    own interval far below -5 %), the others 0-2 trials of 100: the mean's interval lies within
    ±5 %, yet the claim cannot hold, and the reason names subject 7 with its change."""
    claim = _spec({**KEEP, "classes": [0]}).claims
    counts = _trial_counts(30, 100, {s: s % 3 for s in range(1, 31)})
    masked = (counts.key == "cross") & (counts.subject == 7)
    counts.loc[masked, "trial_hits"] = pd.Series([[9] * 100], index=counts.index[masked])
    counts.loc[masked, "class_correct"] = pd.Series([[900]], index=counts.index[masked])
    row = evaluate_claims(claim, {}, counts, "mannwhitneyu", "none").iloc[0]
    assert -5 < row.ci_low < row.ci_high < 5 and row.beyond_margin == "7"
    assert row.verdict == "cannot tell"
    assert "subject 7 (-10.0 [" in row.reason and "past the margin" in row.reason


def test_cells_stored_without_trials_give_a_subject_no_interval_over_its_windows():
    """A subject's own interval counts its trials; windows overlap and share their trial, so
    cells holding only class counts give each subject its change and no interval, and so
    stop no claim (issue 78)."""
    from emg_lens.stats.units import subject_changes

    counts = _trial_counts(3, 20, {2: 10}).drop(columns=["trial_class", "trial_windows"])
    counts = counts.drop(columns=["trial_hits"])
    own = subject_changes(counts[counts.key == "baseline"], counts[counts.key == "cross"], [0])
    assert (own["unit"] == "window").all() and own.loc[2, "delta_pct"] == pytest.approx(-50.0)
    assert own[["low", "high"]].isna().all().all()


def test_a_subjects_own_interval_is_never_below_minus_100():
    """Issue 86: a subject's own interval over its trials reached −111 %, a change no accuracy
    can make; its lower end is −100 % at most (here Student's would be −210 %)."""
    from emg_lens.stats.units import subject_changes

    counts = _trial_counts(2, 3, {1: 2})  # subject 1 keeps 1 trial of 3
    own = subject_changes(counts[counts.key == "baseline"], counts[counts.key == "cross"], [0])
    assert own.loc[1, "low"] == -100.0 and own.loc[1, "high"] > own.loc[1, "delta_pct"]
    assert (own["low"] >= -100).all()


def test_a_keep_claim_on_a_structural_zero_is_never_holds():
    """issue 85: 8 subjects exactly unchanged because the cut cannot reach the readout held a
    keep claim (TOST p = 9.9e-5) beside a summary that called the cell not tested."""
    rows = [
        {"subject": s, "intervention": name, "mode": mode, "layer": None, "layers": "",
         "heads": "all", "key": name, "class_correct": [90 + s, 80], "class_total": [100, 100],
         "structural": name == "cross"}
        for s in range(1, 9)
        for name, mode in (("baseline", "none"), ("cross", "all"))
    ]  # fmt: skip
    claim = Claim.from_dict(
        {"intervention": "cross", "layers": "all", "classes": [0], "expect": "keep", "margin": 0.05}
    )
    table = evaluate_claims([claim], {}, pd.DataFrame(rows), "mannwhitneyu", "bonferroni")
    assert table.loc[0, "verdict"] == "cannot tell"
    assert table.loc[0, "reason"].startswith("not tested: the cut is a structural zero")
    for row in rows:
        row["structural"] = False  # the same numbers from a cut that could have moved them
    table = evaluate_claims([claim], {}, pd.DataFrame(rows), "mannwhitneyu", "bonferroni")
    assert table.loc[0, "verdict"] == "holds"


def test_a_subject_with_a_zero_baseline_leaves_n_and_is_named():
    """Issue 86: a subject whose baseline over the claim's classes is 0 has no Δ% (a change
    relative to nothing); it left the interval and the mean but stayed in ``n``, and a keep
    held (n = 8) while that subject went 0 -> 0.50. It is out of ``n``, out of the means and
    named; a keep past it cannot tell, and a drop says it left that subject out."""
    base = [0.0, 0.8, 0.82, 0.84, 0.86, 0.88, 0.9, 0.92]
    masked = [0.5, 0.8, 0.821, 0.839, 0.86, 0.881, 0.9, 0.919]
    row = _verdict("keep", masked, base, margin=0.05)
    assert row.n == 7 and row.baseline == pytest.approx(np.mean(base[1:]))
    assert row.verdict == "cannot tell", row.reason
    assert "subject 1 (0.000 -> 0.500)" in row.reason and "out of n" in row.reason
    unchanged = _verdict("keep", [0.0, *masked[1:]], base, margin=0.05)
    assert unchanged.n == 7 and "subject 1 (0.000 -> 0.000)" in unchanged.reason
    drop = _verdict("drop", [0.0, *(b - 0.05 for b in base[1:])], base)
    assert drop.n == 7 and "subject 1 (0.000 -> 0.000)" in drop.reason, drop.reason


def test_a_subject_twice_in_the_baseline_is_refused_by_name_in_a_claim():
    """Issue 86: evaluate_claims kept the second of two baseline rows of one subject."""
    counts = _counts([0.8] * 4, [0.9] * 4)
    twice = counts[(counts.key == "baseline") & (counts.subject == 3)]
    twice = twice.assign(class_correct=[[100]])
    counts = pd.concat([counts, twice], ignore_index=True)
    claims = _spec({**DROP, "classes": [0]}).claims
    with pytest.raises(StudyError, match=r"subject 3 holds 2 baseline rows"):
        evaluate_claims(claims, {}, counts, "mannwhitneyu", "none")


def test_summary_md_says_what_its_plus_minus_and_its_statistic_column_hold(tmp_path):
    """Issue 86: "Baseline accuracy: 0.968 ± 0.011" did not say ± what (the SD over
    subjects), and a column ``U`` held the mean paired difference of a permutation study."""
    subjects = {s: tiny_subject(s, 16, subject=s, perturb=True) for s in range(1, 4)}
    spec = _spec(stats={"test": "permutation"})
    run_study(spec, models=subjects, out_dir=tmp_path, progress=False)
    summary = (tmp_path / "summary.md").read_text()
    assert re.search(
        r"Baseline accuracy: \d\.\d{3} ± \d\.\d{3} \(mean ± SD over 3 subjects\)", summary
    )
    assert re.search(r"Baseline accuracy: \S+ ± \S+ \(mean ± SD over 3 subjects\)\. Δ%", summary)
    assert "mean_diff: the test's statistic (the mean paired difference" in summary
    header = next(line for line in summary.splitlines() if line.startswith("| intervention"))
    assert "| mean_diff |" in header and "| U |" not in header


def test_a_keeps_spread_note_prints_the_subjects_sd():
    """Issue 86: a keep's reason gave the spread as 35.2 where the subjects' SD was 15.1 (the
    skew-corrected interval's width read back through Student's t). It prints their SD."""
    base = [0.9] * 8
    row = _verdict("keep", [0.9] * 7 + [0.54], base, margin=0.05)  # one subject -40 %
    assert row.verdict == "cannot tell"
    assert f"here their SD is {row.subject_sd:.1f}" in row.reason, row.reason
    assert "at most 3.3 points for ±5% (at a mean change of 0, the changes taken as skewed 5)" in (
        row.reason
    )


def test_a_drop_that_holds_says_whose_own_interval_includes_zero():
    """Issue 86: a drop verdict did not say its reach, as a keep's does: here 8 subjects of 20
    trials each, subject 8 unchanged; the drop holds for the typical subject and names 8."""
    claim = _spec({**DROP, "classes": [0]}).claims
    counts = _trial_counts(8, 20, {s: 20 for s in range(1, 8)})
    row = evaluate_claims(claim, {}, counts, "mannwhitneyu", "none").iloc[0]
    assert row.verdict == "holds", row.reason
    assert "its reach: the typical subject fell, not each one: the own intervals of subject 8" in (
        row.reason
    )


def test_a_keep_on_losses_that_lean_left_is_not_held_on_their_few_subjects_skew():
    """Issue 86: cuts' losses lean left across subjects (most a little, a few a lot), which 8
    subjects rarely show; with their own skewness a keep on its margin held in 8 % of studies
    of exponential losses. Here 8 subjects lose 2-6 % (mean -3.6 %, SD 1.2, little skew):
    Student's and the sample's skew-corrected bound both clear -5 %, the claim's does not,
    since it assumes a skewness of at least SKEW_FLOOR whatever the subjects show."""
    loss = np.array([2.0, 3.0, 4.0, 3.5, 2.5, 4.5, 3.0, 6.0])
    masked = 0.9 * (1 - loss / 100)
    row = _verdict("keep", masked, np.full(8, 0.9), margin=0.05)
    pct = _pct(masked, np.full(8, 0.9))
    assert skew_t_interval(pct, CI_LEVEL)[0] > -5 and t_interval(pct, CI_LEVEL)[0] > -5
    assert row.verdict == "cannot tell" and row.ci_low < -5
    assert f"skewed at least {SKEW_FLOOR:g} either way" in row.method


def test_a_claims_interval_never_reaches_below_minus_100_percent():
    """Issue 86: no interval of a change of accuracy may say more than all of it was lost. Half
    of 8 subjects lose everything, half nothing: the skew-corrected interval's lower end lies
    far below -100 %, and the claim's stops there."""
    base = np.full(8, 0.9)
    masked = np.array([0.0] * 4 + [0.9] * 4)
    assert skew_t_interval(_pct(masked, base), CI_LEVEL, skew_floor=SKEW_FLOOR)[0] < -100
    row = _verdict("drop", masked, base)
    assert row.ci_low == -100.0 and row.ci_high > -100
