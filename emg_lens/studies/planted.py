"""Planted vs found: does a study of models trained on synthetic data recover what was planted?

The synthetic data (`emg_lens.data.synthetic`) plants two facts about its gestures:

1. **interaction gestures collapse when cross-modal edges are cut**: they are told apart only
   by combining sEMG with ACC, so a model that cannot move information between the modalities
   cannot recognise them (their accuracy must drop, significantly);
2. **sEMG-only and ACC-only gestures keep their accuracy**: one modality identifies each, so
   cutting cross-modal edges must leave them alone (the control: their change must *not* be
   significant).

`planted_findings` tests both on the study's condition that cuts every cross-modal edge in
every layer, from the per-class counts every cell holds, with the study's own test. Each claim
is one pre-specified test and its p-value is not corrected: a correction would only make the
control easier to pass. Scored on IsoNet's mean-pooled head (``return_type = "avg_logits"``),
which reads the channel tokens only, cross-modal edges are the only route to the interaction
gestures (the CLS head has another: the CLS token reads both modalities).

>>> groups = kind_groups({1: "emg", 2: "acc", 3: "interaction", 4: "interaction"}, [1, 2, 3, 4])
>>> groups
{'interaction': [2, 3], 'unimodal': [0, 1]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

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

__all__ = ["CLAIMS", "cut_everywhere", "format_findings", "kind_groups", "planted_findings"]

CLAIMS = {
    "interaction": ("interaction gestures collapse when cross-modal edges are cut", "drop"),
    "unimodal": ("sEMG-only and ACC-only gestures keep their accuracy", "no change"),
}
"""Group -> (the planted claim, what the study must find: a significant drop, or none)."""


def kind_groups(kinds: Mapping[int, str], classes: Sequence[int]) -> dict[str, list[int]]:
    """Class indices of the interaction gestures and of the single-modality ones (``"emg"`` and
    ``"acc"`` kinds together), from `emg_lens.data.synthetic.gesture_kinds` and the models'
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
    result: StudyResult, groups: Mapping[str, Sequence[int]], *, intervention: str = "cross"
) -> pd.DataFrame:
    """One row per planted claim (`CLAIMS`): the group's accuracy per subject under the
    `cut_everywhere` condition vs the baseline, the study's test, and whether the study found
    what was planted (``found``: a significant drop for ``interaction``; no significant change
    for ``unimodal``).

    Columns: ``group, claim, expected, condition, n, baseline, masked, delta_pct, ci_low,
    ci_high, r_rb, test, p, stars, found``.
    """
    condition = cut_everywhere(result, intervention)
    accuracy = result.class_accuracy({name: list(idx) for name, idx in groups.items()})
    test = result.spec.stats.test
    rows = []
    for group, (claim, expected) in CLAIMS.items():
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
        _, p = compare(masked, base, test)
        ci_low, ci_high = bootstrap_delta_ci(masked, base)
        significant = p < ALPHA
        dropped = significant and np.nanmean(masked) < np.nanmean(base)
        rows.append(
            {
                "group": group,
                "claim": claim,
                "expected": expected,
                "condition": f"{condition['intervention']} · {condition['mode']} "
                f"(layers {condition['layers']})",
                "n": len(base),
                "baseline": float(np.nanmean(base)),
                "masked": float(np.nanmean(masked)),
                "delta_pct": delta_pct(float(np.nanmean(masked)), float(np.nanmean(base))),
                "ci_low": ci_low,
                "ci_high": ci_high,
                "r_rb": rank_biserial(masked, base, test),
                "test": test,
                "p": p,
                "stars": stars(p),
                "found": bool(dropped) if expected == "drop" else not significant,
            }
        )
    return pd.DataFrame(rows)


def format_findings(findings: pd.DataFrame) -> str:
    """The findings as lines to print beside the study's table."""
    first = findings.iloc[0]
    lines = [
        f"Planted vs found ({first['condition']}: every cross-modal edge cut; "
        f"{TEST_NAMES[first['test']]} over {first['n']} subjects, one uncorrected test per claim):"
    ]
    for r in findings.itertuples(index=False):
        verdict = "significant drop" if r.expected == "drop" else "no significant change"
        lines.append(
            f"  planted: {r.claim} (expected: {verdict})\n"
            f"    accuracy {r.baseline:.3f} -> {r.masked:.3f}, Δ {r.delta_pct:+.1f}% "
            f"[95% CI {r.ci_low:+.1f}, {r.ci_high:+.1f}], r_rb {r.r_rb:+.2f}, "
            f"p = {r.p:.2g} {r.stars}  ->  found: {'yes' if r.found else 'NO'}"
        )
    return "\n".join(lines)
