"""Testing the claims an ablation study declares (`emg_lens.studies.ablation.claims`), and
the verdicts: docs/guide/studies.md says what each verdict takes, docs/DESIGN.md §16 why.

A claim is tested paired, on each subject's accuracy over its classes under its condition
against the baseline's; its Δ% is the mean of the subjects' own Δ% (not the summary table's
ratio of means: the two can differ in sign), its interval the 90 % skew-corrected t of those
(`emg_lens.stats.compare.skew_t_interval`). A drop is tested by ``stats.claims_test`` and the
study's correction, a keep by TOST (`emg_lens.stats.design.tost`). `evaluate_claims` tests
claims (``claims.csv``, each row naming its test and reason); `format_claims` and
`claims_markdown` say them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from emg_lens.errors import SpecError, StudyError
from emg_lens.output import markdown_table
from emg_lens.stats.compare import (
    ALPHA,
    CLAIMS_TESTS,
    EXACT_MAX_N,
    KEEP_MIN_SUBJECTS,
    PAIRED,
    PERMUTATIONS,
    SKEW_FLOOR,
    compare,
    correct,
    format_p,
    one_baseline_row_each,
    paired_test,
    rank_biserial,
    skew_t_interval,
    stars,
)
from emg_lens.stats.design import corrected_floor, tost, tost_max_sd
from emg_lens.stats.units import subject_changes
from emg_lens.studies.ablation.claims import Claim, class_indices, matching_keys

CI_LEVEL = 0.90  # the t-interval of per-subject Δ%: TOST's, and a drop's one-sided 95 % bound
NO_INTERVAL = "no interval of the change (fewer than 2 subjects with a baseline accuracy above 0)"
VERDICTS = ("holds", "fails", "cannot tell")
STRUCTURAL_ZERO = (
    "cannot tell",
    "not tested: the cut is a structural zero on these models (its edges cannot reach the "
    "scored output), so its subjects are unchanged by construction, not by evidence",
)
"""The verdict of any claim on a structural zero: an unchanged output tested nothing."""
CLAIM_COLUMNS = [
    *("claim", "intervention", "layers", "heads", "classes", "class_indices", "expected"),
    *("condition", "n", "baseline", "masked", "delta_pct", "ci_low", "ci_high", "r_rb"),
    *("test", "p", "p_corr", "stars", "verdict", "reason", "margin", "ci_level", "method"),
    *("sd_floor", "floor_unit", "subject_sd"),
    *("unseen_share", "subjects", "beyond_margin"),
]
"""The columns of ``claims.csv``, one row per declared claim."""


def _group_accuracy(rows: pd.DataFrame, classes: list[int], where: str) -> pd.Series:
    """Per subject: correct over total test windows of ``classes``."""
    out = {}
    for r in rows.itertuples(index=False):
        total = int(np.asarray(r.class_total)[classes].sum())
        if total == 0:
            raise StudyError(
                f"{where}: subject {r.subject} has no test window of classes {classes}, so the "
                "claim has no accuracy to test there"
            )
        out[r.subject] = int(np.asarray(r.class_correct)[classes].sum()) / total
    return pd.Series(out, dtype=float)


def _sampling_floor(rows: pd.DataFrame, classes: list[int]) -> tuple[pd.Series, str]:
    """Per subject, the change of its Δ% one of its test trials makes, ``100 / (T b)``: all an
    unchanged subject is known to; over windows (``"window"``) where cells hold no trials."""
    floors, unit = {}, "trial"
    for r in rows.itertuples(index=False):
        trial_class = getattr(r, "trial_class", None)
        if isinstance(trial_class, list | tuple | np.ndarray):
            count = int(np.isin(np.asarray(trial_class), classes).sum())
        else:
            count, unit = int(np.asarray(r.class_total)[classes].sum()), "window"
        accuracy = int(np.asarray(r.class_correct)[classes].sum()) / max(
            int(np.asarray(r.class_total)[classes].sum()), 1
        )
        floors[r.subject] = 100.0 / (count * accuracy) if count and accuracy > 0 else np.nan
    return pd.Series(floors, dtype=float), unit


def unseen_share(n: int, alpha: float = ALPHA) -> float:
    """The largest share of subjects that could each lose more than a claim's margin and still
    go unsampled in more than ``alpha`` of studies of ``n`` subjects: ``1 − alpha^(1/n)`` (NaN
    without subjects; why a keep says it: docs/DESIGN.md §18).

    >>> [round(100 * unseen_share(n)) for n in (4, 8, 15)]
    [53, 31, 18]
    """
    return 1 - alpha ** (1 / n) if n > 0 else float("nan")


def _measured_third(changes: pd.DataFrame, pct: np.ndarray) -> float | None:
    """The mean of the subjects' own third cumulants of Δ% (`subject_changes`' ``k3``): the
    skew-corrected interval's second estimate, stable where a few subjects' sample skewness is
    not (docs/trust.md). None where a subject's trials are not held."""
    k3 = changes["k3"].to_numpy(float)[np.isfinite(pct)]
    return float(k3.mean()) if len(k3) and np.isfinite(k3).all() else None


def _change_text(r: Any) -> str:
    """``−1.2 [−4.0, +1.6]``: one subject's own change and its interval, in %."""
    if not np.isfinite(r.delta_pct):
        return "n/a"
    if not (np.isfinite(r.low) and np.isfinite(r.high)):
        return f"{r.delta_pct:+.1f}"
    if r.low == r.high:  # no trial changed: exactly unchanged on these trials, no interval
        return f"{r.delta_pct:+.1f} [no trial changed]"
    return f"{r.delta_pct:+.1f} [{r.low:+.1f}, {r.high:+.1f}]"


def _subjects_text(changes: pd.DataFrame) -> str:
    """``1 −1.2 [−4.0, +1.6]; 2 ...``: each subject's own change and its interval, in %."""
    return "; ".join(f"{s} {_change_text(r)}" for s, r in zip(changes.index, changes.itertuples()))


def _beyond(changes: pd.DataFrame, expect: str, bound: float) -> pd.DataFrame:
    """The subjects whose own interval lies wholly past the margin: below ``-bound`` (a keep's
    or a drop's), or above ``+bound`` (a keep's)."""
    past = changes["high"] < -bound
    if expect == "keep":
        past |= changes["low"] > bound
    return changes[past.fillna(False).to_numpy(bool)]


def evaluate_claims(
    claims: Sequence[Claim],
    class_groups: Mapping[str, Sequence[int]],
    counts: pd.DataFrame,
    test: str,
    correction: str,
    *,
    claims_test: str = PAIRED,
) -> pd.DataFrame:
    """Test ``claims`` on a study's class counts: ``counts`` has one row per (subject,
    condition) with ``subject, intervention, mode, layer, layers, heads, key, class_correct,
    class_total`` (the baseline's intervention is ``"baseline"``). Drop claims are tested by
    ``claims_test`` (`PAIRED` unless it names one of `TESTS`) and ``correction`` (over the drop
    claims); keep claims by TOST. ``test``, the tables' test, decides no claim. One row per
    claim, columns `CLAIM_COLUMNS`.

    >>> rows = [{"subject": s, "intervention": name, "mode": mode, "layer": None,
    ...          "layers": "", "heads": "all", "key": name,
    ...          "class_correct": [kept, hit], "class_total": [100, 100]}
    ...         for s in range(1, 9)
    ...         for name, mode, kept, hit in (("baseline", "none", 100, 90),
    ...                                       ("cross", "all", 100 - s % 2, 20 + s % 2))]
    >>> claims = [Claim.from_dict({"intervention": "cross", "layers": "all", "classes": c,
    ...     "expect": e, **m}) for c, e, m in (([1], "drop", {}), ([0], "keep", {"margin": .05}))]
    >>> table = evaluate_claims(claims, {}, pd.DataFrame(rows), "mannwhitneyu", "bonferroni")
    >>> print(table[["classes", "masked", "test", "stars", "verdict"]].to_string(index=False))
    classes  masked        test stars verdict
          1   0.205 permutation    **   holds
          0   0.995        tost         holds
    >>> low, high = table.loc[1, ["ci_low", "ci_high"]].astype(float).round(2)
    >>> [format_p(p) for p in table["p"]], float(low), float(high)
    (['0.00781', '0.00111'], -1.58, 0.58)
    >>> print(table["method"][0])  # doctest: +NORMALIZE_WHITESPACE
    exact sign-flip test over 8 subjects (paired, all 256 relabellings),
    bonferroni over 1 drop claim
    >>> # half the subjects unchanged over 100 windows (one window: 1 %), the others 1 % down
    >>> round(float(table.loc[1, "sd_floor"]), 3), table.loc[1, "floor_unit"]
    (0.707, 'window')
    """
    if claims_test not in CLAIMS_TESTS:
        raise SpecError(f"stats.claims_test = {claims_test!r}; accepted: {list(CLAIMS_TESTS)}")
    counts = counts.reset_index(drop=True)
    baseline_rows = counts[counts["intervention"] == "baseline"]
    accuracy = [
        np.sum(c) / max(np.sum(t), 1)
        for c, t in zip(baseline_rows["class_correct"], baseline_rows["class_total"])
    ]
    subjects = baseline_rows["subject"].tolist()
    one_baseline_row_each(subjects, accuracy, "the claims' class counts", StudyError)
    n_classes = len(baseline_rows["class_total"].iloc[0]) if len(baseline_rows) else 0
    rows, beyond, zeros, unscored, owns = [], [], [], [], []
    for i, claim in enumerate(claims):
        where = f"claims[{i}]"
        key = matching_keys(claim, counts[counts["intervention"] != "baseline"], where)
        classes = class_indices(claim, class_groups, n_classes, where)
        base = _group_accuracy(baseline_rows, classes, where)
        masked = _group_accuracy(counts[counts["key"] == key], classes, where).reindex(base.index)
        m, b = masked.to_numpy(float), base.to_numpy(float)
        # a subject with no baseline accuracy over these classes has no Δ%: out of n, named
        no_base = np.isfinite(m) & (b == 0)
        unscored.append([(s, m[j]) for j, s in enumerate(base.index) if no_base[j]])
        m, b = m[~no_base], b[~no_base]
        paired = np.isfinite(m) & np.isfinite(b)  # the means, like the test, over these
        n = int(paired.sum())
        pct = _subject_pct(m, b)
        finite = pct[np.isfinite(pct)]
        floors, unit = _sampling_floor(baseline_rows, classes)
        unchanged = np.where(pct == 0, floors.reindex(base.index[~no_base]).to_numpy(float), 0.0)
        unchanged = unchanged[np.isfinite(pct)]
        sd_floor = float(np.sqrt(np.nanmean(unchanged**2))) if len(unchanged) else 0.0
        own = subject_changes(baseline_rows, counts[counts["key"] == key], classes)
        beyond.append(_beyond(own, claim.expect, claim.bound))
        owns.append(own[~no_base])
        third = _measured_third(own[~no_base], pct)
        if claim.expect == "keep":
            used, p = "tost", tost(pct, claim.bound, sd_floor, third=third, skew_floor=SKEW_FLOOR)
        else:
            used = paired_test(n) if claims_test == PAIRED else claims_test
            p = compare(m, b, used)[1] if len(m) else np.nan  # none scored: no test
        ci_low, ci_high = skew_t_interval(
            pct, CI_LEVEL, sd_floor, third=third, skew_floor=SKEW_FLOOR
        )
        ci_low = max(ci_low, -100.0)  # no accuracy falls by more than all of it (NaN stays)
        cell = counts[counts["key"] == key].iloc[0]
        # a cut that cannot change the scored output (`evaluate.structural_zeros`) tests nothing
        cells = counts[counts["key"] == key]
        zeros.append("structural" in cells and bool(cells["structural"].astype(bool).all()))
        rows.append(
            {
                "claim": claim.title(),
                "intervention": claim.intervention,
                "layers": claim.layers,
                "heads": cell["heads"],
                "classes": claim.classes_label(),
                "class_indices": ",".join(map(str, classes)),
                "expected": claim.expected,
                "condition": f"{claim.intervention} · {claim.layers}"
                + (f" (layers {cell['layers']})" if cell["layers"] else ""),
                "n": n,
                "baseline": float(np.mean(b[paired])) if n else np.nan,
                "masked": float(np.mean(m[paired])) if n else np.nan,
                "delta_pct": float(np.mean(finite)) if len(finite) else np.nan,
                "ci_low": ci_low,
                "ci_high": ci_high,
                "r_rb": rank_biserial(m, b, "permutation" if used == "tost" else used),
                "test": used,
                "p": p,
                "margin": claim.bound / 100,
                "ci_level": CI_LEVEL,
                "sd_floor": sd_floor,
                "floor_unit": unit,
                "subject_sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else np.nan,
                "unseen_share": unseen_share(n),
                "subjects": _subjects_text(own),
                "beyond_margin": " ".join(map(str, beyond[-1].index)),
            }
        )
    extra = ["margin", "ci_level", "sd_floor", "floor_unit", "subject_sd", *CLAIM_COLUMNS[-3:]]
    table = pd.DataFrame(rows, columns=[*CLAIM_COLUMNS[:17], *extra])
    drops = [i for i, c in enumerate(claims) if c.expect == "drop"]
    table["p_corr"] = np.nan
    if drops:
        table.loc[drops, "p_corr"] = correct(table.loc[drops, "p"].tolist(), correction)
    # the family corrected: a drop claim without a p (too few subjects) is left out of it
    family = int(np.isfinite(table.loc[drops, "p"].to_numpy(float)).sum())
    table["stars"] = [stars(p) if c.expect == "drop" else "" for p, c in zip(table.p_corr, claims)]
    verdicts = [
        (STRUCTURAL_ZERO if zero else _verdict(claim, row, family, correction, past, out, own))
        for claim, row, past, zero, out, own in zip(
            claims, table.itertuples(), beyond, zeros, unscored, owns
        )
    ]
    table["verdict"] = [v for v, _ in verdicts]
    table["reason"] = [r + _unscored_text(out) for (_, r), out in zip(verdicts, unscored)]
    table["method"] = [_method(row, family, correction) for row in table.itertuples()]
    return table[CLAIM_COLUMNS]


def _unscored_text(unscored: Sequence[tuple[Any, float]]) -> str:
    """``; subject 3 (0.000 -> 0.500) is out of n: ...``: the subjects a claim could not
    score, named with their accuracies (empty where there are none)."""
    if not unscored:
        return ""
    listed = ", ".join(f"{s} (0.000 -> {m:.3f})" for s, m in unscored)
    word = "subject" if len(unscored) == 1 else "subjects"
    return (
        f"; {word} {listed} out of n: a baseline accuracy of 0 over these classes leaves no "
        "Δ% (a change relative to nothing), so no test or mean counts it"
    )


def _subject_pct(masked: np.ndarray, baseline: np.ndarray) -> np.ndarray:
    """Each subject's Δ% = 100 (masked − baseline) / baseline; NaN where the baseline is 0
    (no change relative to nothing) or a value is missing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(baseline > 0, 100 * (masked - baseline) / baseline, np.nan)


def _method(row: Any, drops: int, correction: str) -> str:
    """Which test decided a claim, in words (the ``method`` column); ``drops``: the drop
    claims the correction was over (those with a p-value)."""
    if row.test == "tost":
        two = (
            " (2 subjects: no sample skewness is estimable, so Student's t, and where the "
            "cells hold their trials also the skew those trials measure, each bound the more "
            "cautious; Student's alone holds about 6% of claims exactly on their margin)"
            if row.n == 2
            else ""
        )
        return (
            f"TOST (Schuirmann 1987) with Johnson's skew-corrected t (Hall 1992), the "
            f"subjects' changes taken as skewed at least {SKEW_FLOOR:g} either way (cuts' "
            f"losses lean to large ones; docs/trust.md): {100 * row.ci_level:g}% interval of "
            f"per-subject Δ% over {row.n} subjects within ±{100 * row.margin:g}%{two}"
        )
    n = row.n
    test = {
        "permutation": f"exact sign-flip test over {n} subjects (paired, all {2**n} relabellings)"
        if n <= EXACT_MAX_N
        else f"sign-flip test over {n} subjects (paired, {PERMUTATIONS} seeded relabellings)",
        "wilcoxon": f"Wilcoxon signed-rank test over {n} subjects (paired)",
        "mannwhitneyu": f"Mann–Whitney U over {n} against {n} subjects' values (unpaired)",
    }[row.test]
    if not np.isfinite(row.p):
        return f"{test}: no p-value, so outside the correction"
    if correction == "none":
        return f"{test}, uncorrected"
    return f"{test}, {correction} over {drops} drop claim{'s' if drops > 1 else ''}"


def interval_verdict(expect: str, low: float, high: float, bound: float) -> str:
    """What the interval ``[low, high]`` of a claim's change (in %) decides against its
    margin ``±bound`` % (a drop's, when it is not significant).

    >>> interval_verdict("keep", -2.0, 4.0, 5.0), interval_verdict("keep", -6.0, 1.0, 5.0)
    ('holds', 'cannot tell')
    >>> interval_verdict("drop", -4.0, 3.0, 5.0), interval_verdict("drop", -6.0, 1.0, 5.0)
    ('fails', 'cannot tell')
    """
    if not (np.isfinite(low) and np.isfinite(high)):
        return "cannot tell"
    if expect == "drop":
        return "fails" if low > -bound else "cannot tell"
    if -bound <= low and high <= bound:
        return "holds"
    return "fails" if high < -bound or low > bound else "cannot tell"


def _reach(row: Any, bound: float, own: pd.DataFrame | None) -> str:
    """What a keep that holds (or a drop that fails) could not have seen, in words: the room
    its lower bound leaves for a subgroup losing twice and four times the margin (``s ≤ −low /
    L``), the share left unsampled (`unseen_share`), and what one subject's interval resolves."""
    room = max(-float(row.ci_low), 0.0)
    shares = [min(room / (k * bound), 1.0) for k in (2, 4)]
    return (
        f"; its reach: the typical subject. Its lower bound, {row.ci_low:+.1f}%, leaves room "
        f"for up to {shares[0]:.0%} of subjects to lose {2 * bound:g}% each (twice the margin), "
        f"or {shares[1]:.0%} to lose {4 * bound:g}%, the others unchanged; {row.n} subjects "
        f"leave unsampled, in over 5% of such studies, a subgroup of up to "
        f"{100 * row.unseen_share:.0f}% that lose any amount; {_resolves(own, bound)}"
    )


def _resolves(own: pd.DataFrame | None, bound: float) -> str:
    """Which losses the subjects' own intervals can flag: from about ``bound + h`` on (``h`` the
    median half-width), where a subject's upper bound ``−L + h`` passes ``−bound``."""
    widths = [] if own is None else (own["high"] - own["low"]).to_numpy(float) / 2
    widths = np.asarray(widths, float)
    if not np.isfinite(widths).any():
        return "no subject's own interval (the cells hold no trials) flags a loss of its own"
    widths = widths[widths > 0]  # an interval of trials that did not change resolves nothing
    if not len(widths):
        return "no subject's own interval lies past the margin (no trial of any subject changed)"
    h = float(np.median(widths))
    return (
        f"no subject's own interval lies past the margin, and one flags a loss only from about "
        f"{bound + h:.0f}% on (the margin plus the median half-width of the intervals over "
        f"their trials, {h:.1f} points)"
    )


def _drop_reach(own: pd.DataFrame | None) -> str:
    """What a drop that holds says of each subject, in words: a fall of the typical subject, and
    whose own interval includes 0."""
    if own is None or own.empty:
        return ""
    known = own[np.isfinite(own["low"]) & np.isfinite(own["high"])]
    reach = "; its reach: the typical subject fell"
    if known.empty:
        return reach + " (no subject's own interval: the cells hold no trials)"
    zero = known[(known["low"] <= 0) & (known["high"] >= 0)]
    if zero.empty:
        return reach + ", and every subject's own interval over its trials lies off 0"
    word = "subject" if len(zero) == 1 else "subjects"
    return reach + (
        f", not each one: the own intervals of {word} {', '.join(map(str, zero.index))} over "
        "their trials (Bonferroni over the subjects) include 0, no fall of their own shown"
    )


def _past_margin(past: pd.DataFrame) -> str:
    """``, but subject 3 (−41.0 [−52.1, −29.9]) changed past the margin …``."""
    listed = [f"{s} ({_change_text(r)})" for s, r in zip(past.index, past.itertuples())]
    word = "subject" if len(listed) == 1 else "subjects"
    return (
        f", but {word} {', '.join(listed)} changed past the margin on their own trials "
        "(intervals Bonferroni-corrected over the subjects)"
    )


def _verdict(
    claim: Claim,
    row: Any,
    m: int,
    correction: str,
    past: pd.DataFrame,
    unscored: Sequence[tuple[Any, float]] = (),
    own: pd.DataFrame | None = None,
) -> tuple[str, str]:
    """``(verdict, why)`` of one claim (docs/guide/studies.md's rules); ``past``: `_beyond`;
    ``unscored``: (subject, masked accuracy) of the subjects with a baseline accuracy of 0;
    ``own``: `subject_changes` of the scored subjects."""
    bound = claim.bound
    interval = f"{100 * row.ci_level:g}% interval [{row.ci_low:+.1f}, {row.ci_high:+.1f}]%"
    if getattr(row, "sd_floor", 0) > getattr(row, "subject_sd", np.inf):  # the floor widened it
        interval += f" (spread floored at {row.sd_floor:.2g}% from {row.subject_sd:.2g}%)"
    no_interval = not (np.isfinite(row.ci_low) and np.isfinite(row.ci_high))
    by_interval = interval_verdict(claim.expect, row.ci_low, row.ci_high, bound)
    few = (
        f", but every subject changed alike (no spread), and no change is concluded from no "
        f"spread on fewer than {KEEP_MIN_SUBJECTS} subjects ({row.n} here): cuts often leave "
        "some subjects exactly unchanged while they change others"
    )
    alike = row.n < KEEP_MIN_SUBJECTS and not row.subject_sd > 0
    if claim.expect == "keep":
        if no_interval:
            return "cannot tell", NO_INTERVAL
        if by_interval == "holds" and alike:
            return "cannot tell", f"{interval} lies within ±{bound:g}%{few}"
        if by_interval == "holds" and not past.empty:
            return "cannot tell", f"{interval} lies within ±{bound:g}%{_past_margin(past)}"
        if by_interval == "holds" and any(moved != 0 for _, moved in unscored):
            return "cannot tell", (
                f"{interval} lies within ±{bound:g}% of the subjects with a Δ%, but a subject "
                "with a baseline accuracy of 0 changed (below), which no Δ% measures"
            )
        if by_interval == "holds":
            held = f"TOST {format_p(row.p, 2, 'p')}: {interval} lies within ±{bound:g}%"
            return "holds", held + _reach(row, bound, own)
        if by_interval == "fails":
            return "fails", f"{interval} lies wholly outside ±{bound:g}%"
        return "cannot tell", f"{interval} reaches past ±{bound:g}%" + _spread_note(row, bound)
    if row.n < 2 or not np.isfinite(row.p_corr):
        return "cannot tell", f"no test with {row.n} subject(s)"
    significant = row.p_corr < ALPHA
    p_corr = format_p(row.p_corr, 2, "p_corr")
    if significant and row.masked < row.baseline:
        return "holds", f"{p_corr} < {ALPHA} and the accuracy fell" + _drop_reach(own)
    found = f"a significant rise ({p_corr})" if significant else f"no significant drop ({p_corr})"
    if no_interval:
        return "cannot tell", f"{found}, and {NO_INTERVAL}"
    above = f"{found}, and the {interval} lies wholly above -{bound:g}%"
    if by_interval == "fails" and alike:
        return "cannot tell", above + few
    if by_interval == "fails" and not past.empty:
        return "cannot tell", above + _past_margin(past)
    if by_interval == "fails":
        return "fails", above + _reach(row, bound, own)
    why = f"{found}, but the {interval} reaches below -{bound:g}%"
    floor = corrected_floor(row.n, m, row.test, correction)
    if floor >= ALPHA:
        why += (
            f"; with {row.n} subjects and {m} drop claim(s) the smallest p_corr this test can "
            f"reach is {floor:.3g}, not below {ALPHA}"
        )
    return "cannot tell", why


def _spread_note(row: Any, bound: float) -> str:
    """Why a keep claim's interval is too wide: its subjects' SD (floored) above what TOST
    allows (`emg_lens.stats.design.tost_max_sd`), or else the mean's distance from 0 or skew."""
    limit = tost_max_sd(row.n, bound, SKEW_FLOOR)
    sd = max(row.subject_sd, row.sd_floor) if np.isfinite(row.subject_sd) else row.sd_floor
    if not np.isfinite(sd) or row.n < 2:
        return ""
    what = "their SD" if not row.sd_floor > row.subject_sd else "their SD as floored"
    if sd > limit:
        return (
            f"; with {row.n} subjects the per-subject Δ% may spread (SD) at most {limit:.1f} "
            f"points for ±{bound:g}% (at a mean change of 0, the changes taken as skewed "
            f"{SKEW_FLOOR:g}), here {what} is {sd:.1f}"
        )
    return (
        f"; {what}, {sd:.1f} points, is within the {limit:.1f} allowed at a mean change of 0, "
        "but the mean's distance from 0 or the subjects' own skew widens the interval past "
        "the margin"
    )


def _change(r: Any) -> str:
    """``Δ -60.7% [90% CI -68.3, -51.5]``: the mean change of a claim's subjects and its
    interval (``n/a`` where no subject has a baseline above 0, or there is no interval)."""
    delta = "n/a" if pd.isna(r.delta_pct) else f"{r.delta_pct:+.1f}%"
    level = f"{100 * r.ci_level:g}% CI"
    if pd.isna(r.ci_low) or pd.isna(r.ci_high):
        return f"Δ {delta} [{level} n/a]"
    return f"Δ {delta} [{level} {r.ci_low:+.1f}, {r.ci_high:+.1f}]"


def format_claims(table: pd.DataFrame, prefix: str = "") -> str:
    """Each evaluated claim in three lines (expected; measured and verdict; test and why), as
    the console prints them; ``prefix`` starts each claim's first line."""
    lines = []
    for r in table.itertuples(index=False):
        p_corr = "" if pd.isna(r.p_corr) else f", {format_p(r.p_corr, 2, 'p_corr')} {r.stars}"
        lines.append(
            f"  {prefix}{r.claim} (expected: {r.expected})\n"
            f"    accuracy {r.baseline:.3f} -> {r.masked:.3f}, {_change(r)}, r_rb {r.r_rb:+.2f}, "
            f"{format_p(r.p, 2, 'p')}{p_corr}  ->  {r.verdict}\n"
            f"    {r.method}: {r.reason}"
        )
        if _shows_subjects(r):
            lines.append(
                textwrap.fill(
                    f"each subject's own change, % [interval over its trials]: {r.subjects}",
                    width=100,
                    initial_indent="    ",
                    subsequent_indent="      ",
                )
            )
    return "\n".join(lines)


def _shows_subjects(r: Any) -> bool:
    """Whether a claim's console lines list each subject's own change: wherever the verdict
    concludes no change (a keep, a drop that did not hold), whose reach they show."""
    return bool(r.subjects) and not (r.test != "tost" and r.verdict == "holds")


def claims_markdown(table: pd.DataFrame, test_name: str, correction: str) -> str:
    """The "Claims" section of ``summary.md``: the rules in a paragraph (``test_name``: the
    drop claims' test in words), then one row per claim with its test and why."""
    over = "uncorrected" if correction == "none" else f"{correction} over the drop claims"
    level = f"{100 * CI_LEVEL:g}%"
    intro = (
        f"## Claims\n\nWhat the study file declared before the run, tested on each subject's "
        f"accuracy over the claim's classes under its condition against the baseline, paired. "
        f"Δ% is the mean of the subjects' 100 (masked − baseline) / baseline, with its {level} "
        f"interval (Johnson's skew-corrected t, the changes taken as skewed at least "
        f"{SKEW_FLOOR:g} either way, as cuts' losses are; its ends are one-sided 95% bounds, for "
        f"a population the subjects sample), its spread never below `sd_floor` (claims.csv: the "
        f"change one trial of an unchanged subject makes). A drop is tested by {test_name} "
        f"({over}): it holds when p_corr < {ALPHA} and the accuracy fell, fails only when the "
        f"interval lies wholly above −margin (5% unless the claim names one), else cannot tell. "
        f"A keep is an equivalence test (TOST, Schuirmann 1987): it holds when the interval lies "
        f"within ±margin, fails when it lies wholly outside, else cannot tell. A keep that "
        f"holds, or a drop that fails, speaks for the typical subject, and the row says how far: "
        f"the share of subjects its lower bound leaves room to lose twice and four times the "
        f"margin, the share a study of n leaves unsampled (1 − 0.05^(1/n): 53% at 4, 31% at 8; "
        f"`unseen_share`), and what loss one subject's own interval over its trials can flag (a "
        f"subject past the margin stops the verdict). emg_lens's manual gives the rules "
        f'(docs/guide/studies.md, "Claims") and how often each verdict errs (docs/trust.md).\n\n'
    )
    shown = table.assign(
        measured=[f"{r.baseline:.3f} → {r.masked:.3f}, {_change(r)}" for r in table.itertuples()],
        test=table["method"],
        why=table["reason"],
    )
    columns = ["claim", "condition", "classes", "expected", "measured", "test", "p", "p_corr"]
    shown["each subject's change, %"] = table["subjects"]
    columns = [*columns, "stars", "verdict", "why", "each subject's change, %"]
    return intro + markdown_table(shown[columns], ".3g") + "\n"
