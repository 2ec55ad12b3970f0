"""Erasure conditions of an ablation study (``erase = ...``), and the tables beside their cuts:
the erasers (`ErasureFits`), each erasure tested against its placebo (`erasure_table`) and the
classes outside the concept (`side_effects`); what they fit, run and report:
docs/guide/what-an-edge-carries.md, "Erasing a concept".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pandas as pd

from emg_lens.data.pooled import window_labels
from emg_lens.errors import MAX_SEED, EmgLensError, SpecError
from emg_lens.hooks.erasure import fit_erasers, group_positions
from emg_lens.stats.compare import compare_rows
from emg_lens.studies.ablation.spec import PLACEBO, Intervention, StudySpec

ERASURE_COLUMNS = [
    *("intervention", "mode", "layer", "layers", "concept", "tokens", "metric", "n"),
    *("erasure_delta", "placebo_delta", "difference", "p", "test"),
    *("n_concept_classes", "concept_delta", "concept_placebo_delta"),
    *("n_side_classes", "side_effect", "side_effect_class", "rank", "full_rank", "left"),
]
ERASER_FIELDS = ("rank", "full_rank", "left")
"""What a cell of an erasure (and of its placebo) records of its erasers (`ErasureFits.fitted`):
the smallest rank of its layers' erasers, the rank a full erasure has (the concept's values
less one) and the largest share of the cross-covariance one leaves on its fit windows."""
SIDE_COLUMNS = [
    *("intervention", "mode", "layer", "layers", "class", "n"),
    *("baseline", "erasure_delta", "placebo_delta"),
]


def concept_classes(intervention: Intervention, n_classes: int) -> list[int]:
    """The classes that are the erased concept, whose accuracy change is the erasure's own:
    ``classes`` (or every class) for the gesture, none for another concept (a subject's
    windows are of every class).

    >>> i = Intervention.from_dict({"name": "e", "erase": "gesture", "tokens": "acc",
    ...                             "classes": [0, 1]})
    >>> concept_classes(i, 4), concept_classes(Intervention("s", erase="subject", tokens="acc"), 3)
    ([0, 1], [])
    """
    if intervention.erase != "gesture":
        return []
    return [c for c in range(n_classes) if c not in outside_classes(intervention, n_classes)]


def outside_classes(intervention: Intervention, n_classes: int) -> list[int]:
    """The classes outside an erasure's concept, whose changes are its side effects: the
    classes not in ``classes`` for the gesture among some classes, none for every gesture,
    every class for another concept (a subject, a session).

    >>> i = Intervention.from_dict({"name": "e", "erase": "gesture", "tokens": "acc",
    ...                             "classes": [0, 1]})
    >>> outside_classes(i, 4), outside_classes(Intervention("s", erase="subject", tokens="acc"), 3)
    ([2, 3], [0, 1, 2])
    """
    if intervention.erase != "gesture":
        return list(range(n_classes))
    if intervention.classes is None:
        return []
    return [c for c in range(n_classes) if c not in intervention.classes]


class ErasureFits:
    """The erasers of one subject's erasure conditions, fitted once per concept, token
    group, class restriction and layer set (an erasure and its placebo share them), on the
    subject's training windows."""

    def __init__(self, model: Any, data: Any, batch_size: int = 256):
        self.model, self.data, self.batch_size = model, data, batch_size
        self._fitted: dict[tuple, list] = {}

    def hooks(self, intervention: Intervention, layers: Sequence[int]) -> list[tuple[str, Any]]:
        """The forward hooks of an erasure (or its placebo) in ``layers``."""
        key = (intervention.erase, intervention.tokens, intervention.classes, tuple(layers))
        if key not in self._fitted:
            self._fitted[key] = self._fit(intervention, layers)
        erasers = self._fitted[key]
        if not intervention.placebo:
            return [(e.at, e) for e in erasers]
        seed = intervention.seed or 0  # a seed of the spec's range, plus the layer, wrapped
        return [
            (e.at, e.placebo((seed + layer) % (MAX_SEED + 1))) for e, layer in zip(erasers, layers)
        ]

    def fitted(self, intervention: Intervention, layers: Sequence[int]) -> dict[str, Any]:
        """`ERASER_FIELDS` of the erasers of an erasure (or its placebo) in ``layers``."""
        erasers = self._fitted[(intervention.erase, intervention.tokens, intervention.classes,
                                tuple(layers))]  # fmt: skip
        return dict(zip(ERASER_FIELDS, (min(e.rank for e in erasers),
                                        len(erasers[0].values) - 1,
                                        max(e.left for e in erasers))))  # fmt: skip

    def _fit(self, intervention: Intervention, layers: Sequence[int]) -> list:
        data, name = self.data, intervention.name.removesuffix(PLACEBO)
        # an erasure's (`hooks` is called for erasures only): erase and tokens are set
        erase, tokens = cast(str, intervention.erase), cast(str, intervention.tokens)
        where = f"intervention {name!r} (erase = {erase!r})"
        if not len(data.y_train):
            why = "an eraser is fitted on them (the study scores the held-out windows)"
            raise SpecError(
                f"{where}: subject {data.subject}'s data hold no training windows; {why}"
            )
        try:
            labels = window_labels(data, erase, "train")
            _, positions = group_positions(self.model, tokens)
        except EmgLensError as exc:
            raise SpecError(f"{where}: {exc}") from exc
        keep = np.arange(len(labels))
        if intervention.classes is not None:
            bad = [c for c in intervention.classes if c >= data.n_classes]
            if bad:
                raise SpecError(f"{where}: classes {bad} exceed the data's {data.n_classes}")
            keep = keep[np.isin(np.asarray(data.y_train), intervention.classes)]
        if len(np.unique(labels[keep])) < 2:
            held = f"one value of the concept ({np.unique(labels[keep]).tolist()})"
            why = "erasing it needs two or more (the subject: a pooled model, emg_lens.data.pooled)"
            raise SpecError(
                f"{where}: subject {data.subject}'s training windows hold {held}; {why}"
            )
        names = [f"blocks.{layer}.hook_resid_pre" for layer in layers]
        try:
            return fit_erasers(
                self.model, data.X_train[keep], labels[keep], names=names, positions=positions,
                batch_size=self.batch_size,
            )  # fmt: skip
        except EmgLensError as exc:  # missing labels too
            raise SpecError(f"{where}: {exc}") from exc


def _erasures(spec: StudySpec) -> dict[str, Intervention]:
    return {i.name: i for i in spec.interventions if i.erase is not None}


def _values(per_subject: pd.DataFrame, name: str, metric: str) -> pd.DataFrame:
    """[(mode, layers), subject] values of ``name``'s conditions of ``metric`` (a condition
    is its mode and layer set: ``layer`` is empty for ``all`` and ``explicit``)."""
    rows = per_subject[(per_subject["intervention"] == name) & (per_subject["metric"] == metric)]
    return rows.pivot(index=["mode", "layers"], columns="subject", values="value")


def _layer_of(per_subject: pd.DataFrame, name: str) -> dict[tuple[str, str], Any]:
    """(mode, layers) -> the layer the tables show, of ``name``'s conditions."""
    rows = per_subject[per_subject["intervention"] == name]
    return {(r.mode, r.layers): r.layer for r in rows.itertuples(index=False)}


def _class_accuracy(per_subject: pd.DataFrame, name: str) -> pd.DataFrame:
    """[(mode, layers, class), subject]: each subject's class accuracy under ``name``."""
    rows = per_subject[per_subject["intervention"] == name].drop_duplicates(["subject", "key"])
    out = [
        (r.mode, r.layers, c, r.subject, hit / total if total else np.nan)
        for r in rows.itertuples(index=False)
        for c, (hit, total) in enumerate(zip(r.class_correct, r.class_total))
    ]
    table = pd.DataFrame(out, columns=["mode", "layers", "class", "subject", "value"])
    return table.pivot(index=["mode", "layers", "class"], columns="subject", values="value")


def side_effects(spec: StudySpec, per_subject: pd.DataFrame) -> pd.DataFrame:
    """Per erasure condition and class outside its concept (`outside_classes`): the
    baseline's class accuracy and the erasure's and the placebo's changes of it, each the mean
    over subjects of the subject's own change (`SIDE_COLUMNS`)."""
    table = _class_changes(spec, per_subject)
    return table[~table.pop("concept")].reset_index(drop=True)


def _class_changes(spec: StudySpec, per_subject: pd.DataFrame) -> pd.DataFrame:
    """`side_effects`' rows for every class, ``concept`` saying which are the concept's own
    (`concept_classes`)."""
    rows = []
    baseline = _class_accuracy(per_subject, "baseline").droplevel(["mode", "layers"])
    for name, intervention in _erasures(spec).items():
        own = concept_classes(intervention, len(baseline))
        erased = _class_accuracy(per_subject, name)
        placebo = _class_accuracy(per_subject, name + PLACEBO)
        layer_of = _layer_of(per_subject, name)
        for (mode, layers, c), values in erased.iterrows():
            before = baseline.loc[c].reindex(values.index)
            rows.append(
                {"intervention": name, "mode": mode, "layer": layer_of[(mode, layers)],
                 "layers": layers, "class": c, "n": int(values.notna().sum()),
                 "baseline": before.mean(), "erasure_delta": (values - before).mean(),
                 "placebo_delta": (placebo.loc[(mode, layers, c)] - before).mean(),
                 "concept": c in own}
            )  # fmt: skip
    table = pd.DataFrame(rows, columns=[*SIDE_COLUMNS, "concept"]).astype({"concept": bool})
    table["layer"] = table["layer"].astype("Int64")
    return table


def erasure_table(spec: StudySpec, per_subject: pd.DataFrame) -> pd.DataFrame:
    """Per erasure condition and metric (`ERASURE_COLUMNS`): the mean change over subjects
    under the erasure and under its placebo, their difference tested paired over subjects
    (``test``: the claims' test); the concept's classes' own change under both (empty for a
    concept that is not classes, `concept_classes`); the largest mean drop of a class outside
    the concept; and the erasers' `ERASER_FIELDS` over subjects and layers (the smallest
    ``rank``, the largest share ``left``; empty for cells stored without them)."""
    classes = _class_changes(spec, per_subject)
    rows = []
    for name, intervention in _erasures(spec).items():
        for metric in spec.metrics:
            base = per_subject[
                (per_subject["intervention"] == "baseline") & (per_subject["metric"] == metric)
            ].set_index("subject")["value"]
            erased = _values(per_subject, name, metric)
            placebo = _values(per_subject, name + PLACEBO, metric)
            layer_of = _layer_of(per_subject, name)
            for (mode, layers), values in erased.iterrows():
                layer = layer_of[(mode, layers)]
                other = placebo.loc[(mode, layers)].reindex(values.index)
                base_values = base.reindex(values.index)
                _, p = compare_rows(values.to_numpy()[None], other.to_numpy(),
                                    spec.stats.claims_test)  # fmt: skip
                condition = ((classes["intervention"] == name) & (classes["mode"] == mode)
                             & (classes["layers"] == layers))  # fmt: skip
                mine, own = (
                    classes[condition & ~classes["concept"]],
                    classes[condition & classes["concept"]],
                )
                worst = mine.loc[mine["erasure_delta"].idxmin()] if len(mine) else None
                fits = per_subject[(per_subject["intervention"] == name)
                                   & (per_subject["mode"] == mode)
                                   & (per_subject["layers"] == layers)]  # fmt: skip
                rows.append(
                    {"intervention": name, "mode": mode, "layer": layer, "layers": layers,
                     "concept": intervention.erase, "tokens": intervention.tokens,
                     "metric": metric, "n": int(values.notna().sum()),
                     "erasure_delta": (values - base_values).mean(),
                     "placebo_delta": (other - base_values).mean(),
                     "difference": (values - other).mean(), "p": float(p[0]),
                     "test": spec.stats.claims_test, "n_concept_classes": len(own),
                     "concept_delta": own["erasure_delta"].mean(),
                     "concept_placebo_delta": own["placebo_delta"].mean(),
                     "n_side_classes": len(mine),
                     "side_effect": np.nan if worst is None else worst["erasure_delta"],
                     "side_effect_class": pd.NA if worst is None else int(worst["class"]),
                     **_eraser_fields(fits)}
                )  # fmt: skip
    table = pd.DataFrame(rows, columns=ERASURE_COLUMNS)
    for column in ("layer", "side_effect_class", "rank", "full_rank"):
        table[column] = table[column].astype("Int64")
    return table


def _eraser_fields(rows: pd.DataFrame) -> dict[str, Any]:
    """`ERASER_FIELDS` over a condition's subjects: the smallest rank, the largest left."""
    if "rank" not in rows or rows["rank"].isna().all():
        return {"rank": pd.NA, "full_rank": pd.NA, "left": np.nan}
    return {"rank": int(rows["rank"].min()), "full_rank": int(rows["full_rank"].max()),
            "left": float(rows["left"].max())}  # fmt: skip
