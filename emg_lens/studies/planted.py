"""Planted vs found: does a study of models trained on synthetic data recover what was planted?

The synthetic data (`emg_lens.data.synthetic.emg_acc`) plants two facts about its gestures:

1. **interaction gestures collapse when cross-modal edges are cut**: they are told apart only
   by combining sEMG with ACC, so a model that cannot move information between the modalities
   cannot recognise them (their accuracy must drop, significantly);
2. **sEMG-only and ACC-only gestures keep their accuracy**: one modality identifies each, so
   cutting cross-modal edges must leave them alone (the control: the 95% bootstrap interval of
   their change must lie above -`KEEP_MARGIN_PCT` %).

The control is a non-inferiority claim, not "no significant change": a test of difference cannot
show that two things are the same (too few subjects make any change "ns"), and with enough
subjects it calls a consistent -0.5 % significant, which no reader would call losing accuracy.
Models trained on different CPUs gave both on the demo (p = 0.17 and p = 0.03 for -0.4 % and
-0.5 %), so the claim is decided by the size of the change and the precision it is known with.

`planted_findings` tests both on the study's condition that cuts every cross-modal edge in
every layer, from the per-class counts every cell holds, with the study's own test. Each claim
is one pre-specified test and its p-value is not corrected: a correction would only make the
control easier to pass. Scored on IsoNet's mean-pooled head (``return_type = "avg_logits"``),
which reads the channel tokens only, cross-modal edges are the only route to the interaction
gestures (the CLS head has another: the CLS token reads both modalities).

The planted EEG (`emg_lens.data.synthetic.eeg`) plants the same two facts about two scalp
regions instead of two modalities: pass its truth (`PlantedEEG`) as ``truth=`` and the claims
are worded by its regions (`claims_of`), its classes grouped by `PlantedEEG.groups`.

>>> groups = kind_groups({1: "emg", 2: "acc", 3: "interaction", 4: "interaction"}, [1, 2, 3, 4])
>>> groups
{'interaction': [2, 3], 'unimodal': [0, 1]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from emg_lens.data.synthetic.eeg import PlantedEEG
from emg_lens.data.synthetic.emg_acc import SyntheticSpec, gesture_kinds
from emg_lens.errors import ArgumentError
from emg_lens.studies.result import TEST_NAMES, StudyResult
from emg_lens.studies.stats import (
    ALPHA,
    bootstrap_delta_ci,
    compare,
    delta_pct,
    rank_biserial,
    stars,
)

__all__ = [
    "CLAIMS",
    "CUT",
    "KEEP_MARGIN_PCT",
    "claim_verdict",
    "claims_of",
    "cut_everywhere",
    "format_findings",
    "kind_groups",
    "planted_classes",
    "planted_findings",
]

CLAIMS = {
    "interaction": ("interaction gestures collapse when cross-modal edges are cut", "drop"),
    "unimodal": ("sEMG-only and ACC-only gestures keep their accuracy", "keep"),
}
"""Group -> (the planted claim, what the study must find: a significant drop, or a change whose
95% interval lies above -`KEEP_MARGIN_PCT` %), in the words of the planted sEMG x ACC data;
`claims_of` words them for another truth."""

KEEP_MARGIN_PCT = 5.0
"""The non-inferiority margin of a "keeps its accuracy" claim: the lower end of the 95% bootstrap
interval of Δ% must lie above minus this (at the controls' ~0.99 accuracy, about 5 points)."""

CUT = "every cross-modal edge cut"
"""What the condition the claims are tested on cuts, in the same words."""


def claims_of(truth: PlantedEEG | None = None) -> tuple[dict[str, tuple[str, str]], str]:
    """`CLAIMS` and `CUT` in the words of the data they were planted in: the planted sEMG x
    ACC data's for None; for a planted EEG region interaction (`PlantedEEG`), its two regions'.
    The claims and what the study must find are the same; only the words change.

    >>> from emg_lens.data.synthetic.eeg import planted_eeg_truth
    >>> claims, cut = claims_of(planted_eeg_truth())
    >>> claims["unimodal"][0], cut
    ('frontal-only and parietal-only classes keep their accuracy', 'every edge between two lobes cut')
    >>> claims_of() == (CLAIMS, CUT)
    True
    """  # noqa: E501
    if truth is None:
        return CLAIMS, CUT
    if not isinstance(truth, PlantedEEG):
        raise ArgumentError(
            f"truth must be a PlantedEEG (emg_lens.data.synthetic.eeg.planted_eeg_truth) or None "
            f"(the planted sEMG x ACC data), got {type(truth).__name__}"
        )
    first, second = truth.regions
    claims = {
        "interaction": (
            f"interaction classes ({first} and {second} together) collapse when the edges "
            "between scalp regions are cut",
            CLAIMS["interaction"][1],
        ),
        "unimodal": (f"{first}-only and {second}-only classes keep their accuracy", "keep"),
    }
    return claims, "every edge between two lobes cut"


def kind_groups(kinds: Mapping[int, str], classes: Sequence[int]) -> dict[str, list[int]]:
    """Class indices of the interaction gestures and of the single-modality ones (``"emg"`` and
    ``"acc"`` kinds together), from `emg_lens.data.synthetic.emg_acc.gesture_kinds` and the models'
    class labels (``SubjectData.classes``: class index -> gesture label)."""
    unknown = sorted(set(classes) - set(kinds))
    if unknown:
        raise ArgumentError(f"classes {unknown} have no gesture kind; kinds: {dict(kinds)}")
    index = {label: i for i, label in enumerate(classes)}
    groups = {
        "interaction": [index[g] for g in classes if kinds[g] == "interaction"],
        "unimodal": [index[g] for g in classes if kinds[g] in ("emg", "acc")],
    }
    if not groups["interaction"] or not groups["unimodal"]:
        raise ArgumentError(
            f"planted findings need interaction and single-modality gestures; kinds: {dict(kinds)}"
        )
    return groups


PLANTED_GROUP = "planted: interaction gestures (need both modalities)"


def planted_classes(source: Mapping | None, classes: Sequence[int]) -> dict[str, list[int]]:
    """The class indices a figure marks as planted, by group name: for models trained on the
    planted sEMG x ACC data (a ``data_source`` of dataset ``"synthetic"``, as a checkpoint
    records it), the interaction gestures; for any other source, none.

    >>> source = {"dataset": "synthetic", "synthetic": {"n_emg_gestures": 1,
    ...     "n_acc_gestures": 1, "n_interaction_gestures": 2}}
    >>> planted_classes(source, [1, 2, 3, 4])
    {'planted: interaction gestures (need both modalities)': [2, 3]}
    >>> planted_classes({"dataset": "ninapro_db2"}, [1, 2])
    {}
    """
    if not isinstance(source, Mapping) or source.get("dataset") != "synthetic":
        return {}
    kinds = gesture_kinds(SyntheticSpec(**source["synthetic"]))
    index = [i for i, label in enumerate(classes) if kinds.get(label) == "interaction"]
    return {PLANTED_GROUP: index} if index else {}


def cut_everywhere(result: StudyResult, intervention: str = "cross") -> pd.Series:
    """The summary row of ``intervention`` that acts on the most layers (mode ``all``,
    ``from_first`` at the last layer, ...): with a cross-modal edge set, every cross-modal
    edge cut. Raises `ArgumentError` when the study has no such row."""
    rows = result.summary[result.summary["intervention"] == intervention]
    if rows.empty:
        raise ArgumentError(
            f"intervention {intervention!r} is not in study {result.spec.name!r}; it has "
            f"{sorted(set(result.summary['intervention']))}"
        )
    width = rows["layers"].map(lambda s: len(str(s).split(",")) if s else 0)
    return rows.loc[width.idxmax()]


def planted_findings(
    result: StudyResult,
    groups: Mapping[str, Sequence[int]],
    *,
    intervention: str = "cross",
    truth: PlantedEEG | None = None,
) -> pd.DataFrame:
    """One row per planted claim (`CLAIMS`): the group's accuracy per subject under the
    `cut_everywhere` condition vs the baseline, the study's test, and whether the study found
    what was planted (``found``: a significant drop for ``interaction``; for ``unimodal``, a
    95% bootstrap interval of Δ% above -`KEEP_MARGIN_PCT`, whatever the p-value says).
    ``truth``: the planted EEG's `PlantedEEG`, whose regions word the claims (`claims_of`;
    None: the planted sEMG x ACC data).

    Columns: ``group, claim, expected, condition, cut, n, baseline, masked, delta_pct, ci_low,
    ci_high, r_rb, test, p, stars, found``.
    """
    claims, cut = claims_of(truth)
    condition = cut_everywhere(result, intervention)
    accuracy = result.class_accuracy({name: list(idx) for name, idx in groups.items()})
    test = result.spec.stats.test
    rows = []
    for group, (claim, expected) in claims.items():
        if group not in groups:
            raise ArgumentError(f"groups must include {group!r}; got {sorted(groups)}")
        per_subject = accuracy[accuracy["classes"] == group]
        base = per_subject[per_subject["intervention"] == "baseline"].set_index("subject")
        masked = (
            per_subject[per_subject["key"] == condition["key"]]
            .set_index("subject")["accuracy"]
            .reindex(base.index)
            .to_numpy(dtype=float)
        )
        base = base["accuracy"].to_numpy(dtype=float)
        rows.append(
            {
                "group": group,
                "claim": claim,
                "expected": expected,
                "condition": f"{condition['intervention']} · {condition['mode']} "
                f"(layers {condition['layers']})",
                "cut": cut,
                "n": len(base),
                "baseline": float(np.nanmean(base)),
                "masked": float(np.nanmean(masked)),
                **claim_verdict(expected, masked, base, test),
            }
        )
    return pd.DataFrame(rows)


def claim_verdict(
    expected: str, masked: Sequence[float], baseline: Sequence[float], test: str
) -> dict[str, float | str | bool]:
    """Whether per-subject values under a cut (``masked[i]``, subject ``i``) bear out a planted
    claim against the ``baseline``: ``expected = "drop"`` is found by a significant fall
    (``test``, uncorrected, at `ALPHA`); ``"keep"`` by a 95% bootstrap interval of Δ% whose
    lower end lies above -`KEEP_MARGIN_PCT` (non-inferiority: its p-value is reported, not
    used). Returns ``delta_pct, ci_low, ci_high, r_rb, test, p, stars, found``.

    >>> base = [0.99, 1.0, 0.99, 1.0, 0.98, 1.0]
    >>> claim_verdict("keep", [b - 0.005 for b in base], base, "mannwhitneyu")["found"]
    True
    >>> claim_verdict("keep", [b - 0.2 for b in base], base, "mannwhitneyu")["found"]
    False
    """
    if expected not in ("drop", "keep"):
        raise ArgumentError(f"expected must be 'drop' or 'keep', got {expected!r}")
    masked, baseline = np.asarray(masked, float), np.asarray(baseline, float)
    _, p = compare(masked, baseline, test)
    ci_low, ci_high = bootstrap_delta_ci(masked, baseline)
    if expected == "drop":
        found = p < ALPHA and np.nanmean(masked) < np.nanmean(baseline)
    else:
        found = ci_low > -KEEP_MARGIN_PCT  # False for a NaN interval (fewer than 2 subjects)
    return {
        "delta_pct": delta_pct(float(np.nanmean(masked)), float(np.nanmean(baseline))),
        "ci_low": ci_low,
        "ci_high": ci_high,
        "r_rb": rank_biserial(masked, baseline, test),
        "test": test,
        "p": p,
        "stars": stars(p),
        "found": bool(found),
    }


def format_findings(findings: pd.DataFrame) -> str:
    """The findings as lines to print beside the study's table."""
    first = findings.iloc[0]
    lines = [
        f"Planted vs found ({first['condition']}: {first['cut']}; "
        f"{TEST_NAMES[first['test']]} over {first['n']} subjects, one uncorrected test per claim):"
    ]
    for r in findings.itertuples(index=False):
        verdict = (
            "significant drop"
            if r.expected == "drop"
            else f"95% CI of Δ above -{KEEP_MARGIN_PCT:g}%"
        )
        lines.append(
            f"  planted: {r.claim} (expected: {verdict})\n"
            f"    accuracy {r.baseline:.3f} -> {r.masked:.3f}, Δ {r.delta_pct:+.1f}% "
            f"[95% CI {r.ci_low:+.1f}, {r.ci_high:+.1f}], r_rb {r.r_rb:+.2f}, "
            f"p = {r.p:.2g} {r.stars}  ->  found: {'yes' if r.found else 'NO'}"
        )
    return "\n".join(lines)
