"""Planted vs found: does a study of models trained on synthetic data recover what was planted?

The synthetic data plant two facts (docs/concepts.md, "What the synthetic data plant"):
interaction gestures collapse when cross-modal edges are cut (a drop claim), the others keep
their accuracy (a keep claim within ±100 `PLANTED_MARGIN` %). The demo's study file declares
both (`planted_claims` says them in code; a test keeps the two equal), and `planted_findings`
tests them on a study that does not, on its condition that cuts every cross-modal edge, scored
on IsoNet's mean-pooled head (the CLS head has another route). The planted EEG (`PlantedEEG`,
``truth=``) plants the same facts about two scalp regions.

>>> groups = kind_groups({1: "emg", 2: "acc", 3: "interaction", 4: "interaction"}, [1, 2, 3, 4])
>>> groups
{'interaction': [2, 3], 'unimodal': [0, 1]}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from emg_lens.data.synthetic.eeg import PlantedEEG
from emg_lens.data.synthetic.emg_acc import SyntheticSpec, gesture_kinds
from emg_lens.errors import ArgumentError, checked
from emg_lens.studies.ablation.claims import Claim
from emg_lens.studies.ablation.result import StudyResult
from emg_lens.studies.ablation.verdicts import evaluate_claims, format_claims

CLAIMS = {
    "interaction": ("interaction gestures collapse when cross-modal edges are cut", "drop"),
    "unimodal": ("sEMG-only and ACC-only gestures keep their accuracy", "keep"),
}
"""Group -> (the planted claim, what the study must find: a significant drop, or a change whose
90% t-interval lies within ±100 `PLANTED_MARGIN` %), in the words of the planted sEMG x ACC data;
`claims_of` words them for another truth."""

PLANTED_MARGIN = 0.05
"""The margin of the "keeps its accuracy" claim: the 90% t-interval of the per-subject Δ% must
lie within ±5 % (at the controls' ~0.99 accuracy, about 5 points)."""

CUT = "every cross-modal edge cut"
"""What the condition the claims are tested on cuts, in the same words."""


def claims_of(truth: PlantedEEG | None = None) -> tuple[dict[str, tuple[str, str]], str]:
    """`CLAIMS` and `CUT` in the words of the data they were planted in: the planted sEMG x
    ACC data's for None; for a planted EEG region interaction (`PlantedEEG`), its two regions'.
    The claims and what the study must find are the same; only the words change.

    >>> from emg_lens.data import planted_eeg_truth
    >>> claims, cut = claims_of(planted_eeg_truth())
    >>> claims["unimodal"][0], cut
    ('frontal-only and parietal-only classes keep their accuracy', 'every edge between two lobes cut')
    >>> claims_of() == (CLAIMS, CUT)
    True
    """  # noqa: E501
    if truth is None:
        return CLAIMS, CUT
    if not isinstance(truth, PlantedEEG):
        accepted = "a PlantedEEG (emg_lens.data.synthetic.eeg.planted_eeg_truth) or None"
        raise ArgumentError(f"truth must be {accepted} (sEMG x ACC), got {type(truth).__name__}")
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
        needs = "interaction and single-modality gestures"
        raise ArgumentError(f"planted findings need {needs}; kinds: {dict(kinds)}")
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
        has = f"it has {sorted(set(result.summary['intervention']))}"
        raise ArgumentError(f"intervention {intervention!r} is not in {result.spec.name!r}; {has}")
    width = rows["layers"].map(lambda s: len(str(s).split(",")) if s else 0)
    return rows.loc[width.idxmax()]


def planted_claims(
    groups: Mapping[str, Sequence[int]],
    *,
    intervention: str = "cross",
    layers: str = "all",
    truth: PlantedEEG | None = None,
) -> tuple[Claim, ...]:
    """The planted claims (`CLAIMS`, worded by `claims_of`) as a study declares them: the
    ``interaction`` classes drop under ``intervention`` at ``layers`` (a claim's layer label),
    the ``unimodal`` ones keep their accuracy within `PLANTED_MARGIN`; ``groups`` (as
    `kind_groups` gives them) are the study's ``[class_groups]``.

    >>> [(c.classes, c.expect, c.margin) for c in planted_claims({"interaction": [2, 3],
    ...                                                           "unimodal": [0, 1]})]
    [('interaction', 'drop', None), ('unimodal', 'keep', 0.05)]
    """
    claims, _ = claims_of(truth)
    missing = sorted(set(claims) - set(groups))
    if missing:
        raise ArgumentError(f"groups must include {missing}; got {sorted(groups)}")
    return tuple(
        Claim.from_dict(
            {
                "description": text,
                "intervention": intervention,
                "layers": layers,
                "classes": group,
                "expect": expect,
                **({"margin": PLANTED_MARGIN} if expect == "keep" else {}),
            }
        )
        for group, (text, expect) in claims.items()
    )


@checked
def planted_findings(
    result: StudyResult,
    groups: Mapping[str, Sequence[int]],
    *,
    intervention: str = "cross",
    truth: PlantedEEG | None = None,
) -> pd.DataFrame:
    """The planted claims (`planted_claims`) tested on a study that does not declare them, on
    its `cut_everywhere` condition of ``intervention``, as `evaluate_claims` tests declared
    ones: one row per claim (``holds``: found). ``truth``: a `PlantedEEG`, whose regions word
    the claims (None: the planted sEMG x ACC data)."""
    row = cut_everywhere(result, intervention)
    layers = row["mode"] if pd.isna(row["layer"]) else f"{row['mode']} {int(row['layer'])}"
    if row["mode"] == "explicit":
        layers = f"explicit {row['layers']}"
    claims = planted_claims(groups, intervention=intervention, layers=layers, truth=truth)
    stats = result.spec.stats
    counts = result.of_metric().per_subject
    return evaluate_claims(
        claims, groups, counts, stats.test, stats.correction, claims_test=stats.claims_test
    )


@checked
def format_findings(findings: pd.DataFrame, truth: PlantedEEG | None = None) -> str:
    """The planted claims' rows of a claims table (`StudyResult.claims`, `planted_findings`)
    as the demo prints them: planted vs found (``truth`` words the cut, as in `claims_of`)."""
    first = findings.iloc[0]
    lines = [
        f"Planted vs found ({first['condition']}: {claims_of(truth)[1]}; "
        f"{first['n']} subjects, each claim's test below it):",
        format_claims(findings, prefix="planted: "),
    ]
    return "\n".join(lines)
