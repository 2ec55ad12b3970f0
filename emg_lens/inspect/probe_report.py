"""What edges carry, for a folder of models: the tables and figures ``emg-lens probe`` writes.

`probe_models` (probes and interchange on each subject's model, with and without ``cut``, so a
table shows what the probe finds with the edges and without them) and `probe_subjects`;
`ProbeReport.save` writes the tables, the figures and ``report.html``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from emg_lens.errors import ArgumentError, check_int, checked
from emg_lens.inspect.interchange import interchange, interchange_pairs, over_subjects
from emg_lens.inspect.plots.layers import plot_interchange, plot_probes
from emg_lens.inspect.probes import INPUT, probe_tokens
from emg_lens.output import markdown_table, save_outputs
from emg_lens.stats.chance import TrialScore, chance_console, chance_markdown, chance_table
from emg_lens.train import predict
from emg_lens.train.baseline import below_baseline

NO_CUT = "none"
TRAINED, NULL = "trained", "random init"  # probe_subjects' models: as given, re-initialised
# and INPUT: no weights, the subject probe of the whole input (`probes.INPUT`, layer -1)
TRANSFER = "gesture, leave one subject out"  # probe_subjects' transfer target


@dataclass
class ProbeReport:
    """``probes`` (`probe_tokens`' columns after ``subject, cut``) and ``interchange`` (per
    subject, cut and layer: `Interchange.summary` and ``group``; None when not asked), with
    the ``settings`` they were made with."""

    probes: pd.DataFrame
    interchange: pd.DataFrame | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    chance: pd.DataFrame | None = None  # each model's unmasked accuracy beside chance

    def summary_table(self) -> pd.DataFrame:
        """Probe accuracy, control and selectivity averaged over subjects, per cut, layer and
        group (and per model and target for `probe_subjects`' rows), with the lowest and
        highest row's accuracy (over subjects, and the random-init null's seeds)."""
        keys = [c for c in ("target", "model") if c in self.probes.columns]
        keys += ["cut", "layer", "group"]
        grouped = self.probes.groupby(keys, sort=False)
        mean = grouped[["accuracy", "control_accuracy", "selectivity", "chance"]].mean()
        spread = grouped["accuracy"].agg(accuracy_min="min", accuracy_max="max")
        count = grouped["subject"].nunique().rename("subjects")
        return pd.concat([mean, spread, count], axis=1).reset_index()

    def tables(self) -> dict[str, pd.DataFrame]:
        tables = {"probe_summary.csv": self.summary_table(), "probes.csv": self.probes}
        if self.chance is not None:
            tables["chance.csv"] = self.chance
        if self.interchange is not None:
            tables["interchange.csv"] = self.interchange
        return tables

    def figures(self) -> dict[str, Any]:
        figures = {"probe_accuracy": plot_probes(self.probes)}
        if self.interchange is not None:
            figures["interchange_accuracy"] = plot_interchange(self.interchange)
        return figures

    def summary(self) -> str:
        """A few lines: per cut, the best group at the first and the last layer."""
        table = self.summary_table()
        subjects = self.probes["subject"].nunique()
        lines = [
            f"probes on {subjects} subject(s), {self.settings.get('target', 'gesture')}; "
            + _folds_phrase(self.probes)
        ]
        condition = [c for c in ("target", "model") if c in table.columns] + ["cut"]
        for key, rows in table.groupby(condition, sort=False):
            *named, cut = key
            parts = []
            for layer in dict.fromkeys((rows["layer"].min(), rows["layer"].max())):
                at = rows[rows["layer"] == layer]
                best = at.loc[at["accuracy"].idxmax()]
                parts.append(
                    f"{'the input' if layer < 0 else f'layer {layer}'}: {best['group']} "
                    f"{best['accuracy']:.3f} (control {best['control_accuracy']:.3f})"
                )
            chance = f"; chance {rows['chance'].mean():.3f}"
            head = "".join(f"{v}, " for v in named)
            lines.append(f"  {head}cut {cut}: best " + "; ".join(parts) + chance)
        lines += _subject_readings(table, self.settings.get("null_seeds", 1))
        if self.interchange is not None:
            for row in over_subjects(self.interchange).itertuples():
                interval = f"[{row.ci_low:.3f}, {row.ci_high:.3f}]"
                lines.append(
                    f"  interchange {row.group} at layer {row.layer}, cut {row.cut}: IIA "
                    + (
                        f"{row.iia:.3f} ({row.k} of {row.n} pairs; 95 % interval {interval})"
                        if row.subjects == 1
                        else f"{row.iia:.3f}, the mean of {row.subjects} subjects' (95 % t "
                        f"interval over subjects {interval}; each subject's own interval, over "
                        "its trials, in interchange.csv)"
                    )
                )
        return "\n".join(lines)

    def to_markdown(self) -> str:
        text = "# Probes: what the tokens carry\n\n"
        if self.chance is not None:
            text += chance_markdown(self.chance) + "\n"
        text += "\n".join(f"- {line.strip()}" for line in self.summary().splitlines())
        text += "\n\n## Probe accuracy (mean over subjects)\n\n"
        text += markdown_table(self.summary_table())
        if self.interchange is not None:
            text += "\n\n## Interchange interventions\n\n" + markdown_table(self.interchange)
        return text + "\n"

    def console(self) -> str:
        """What ``emg-lens probe`` prints: the summary, each model's accuracy beside chance
        and a warning for one that is not clearly above it."""
        if self.chance is None:
            return self.summary()
        return f"{self.summary()}\n{chance_console(self.chance, below_baseline=below_baseline)}"

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write the tables (CSV), summary.md, the figures (PNG, SVG) and report.html."""
        return save_outputs(
            out_dir,
            self.tables(),
            self.to_markdown(),
            self.figures,
            kind="probes",
            title="what the tokens carry",
            spec=self.settings,
        )


def _subject_readings(table: pd.DataFrame, seeds: int) -> list[str]:
    """What the subject probe's numbers support, per cut and group at the last layer probed
    (``table``: `ProbeReport.summary_table`): the trained model beside the random-init null's
    range over its ``seeds`` and the probe of the whole input (`INPUT`)."""
    if "target" not in table.columns:
        return []
    rows = table[table["target"] == "subject"]
    top = rows.loc[rows["model"] == INPUT, "accuracy"]
    last = rows.loc[rows["model"] == TRAINED, "layer"].max()
    lines = []
    for (cut, group), at in rows[rows["layer"] == last].groupby(["cut", "group"], sort=False):
        by = at.set_index("model")
        if not {TRAINED, NULL} <= set(by.index) or top.empty:
            continue
        t, c = by.at[TRAINED, "accuracy"], top.iloc[0]
        low, high = by.at[NULL, "accuracy_min"], by.at[NULL, "accuracy_max"]
        if low <= t <= high:
            said = "training neither added nor removed it beyond the random-init range"
        elif t < low:
            said = "training left less of it than every random init passes on"
        elif c >= low:  # the input carries it as well as a random init passes it on, or better
            said = "training kept more of it than every random init; it did not put it there"
        else:
            said = "training made it more linearly readable than the input and every random init"
        lines.append(
            f"  subject at the {group} tokens, layer {last}, cut {cut}: trained {t:.3f}, random "
            f"init {by.at[NULL, 'accuracy']:.3f} ({low:.3f}-{high:.3f} over {seeds} seed(s)): "
            f"the input {'already ' if c >= low else ''}carries the subject ({c:.3f}); {said}"
        )
    return lines


def _folds_phrase(probes: pd.DataFrame) -> str:
    """How the probes were cross-validated, e.g. ``"4 folds leaving one repetition out"``."""
    units = {"trial": "of whole trials", "repetition": "leaving one repetition out",
             "window": "of windows, each its own trial"}  # fmt: skip
    parts = [
        f"{folds} folds {units.get(unit, unit)}"
        for folds, unit in dict.fromkeys(zip(probes["folds"], probes["fold_unit"]))
    ]
    return "cross-validated: " + ", ".join(parts)


def probe_models(
    subjects: Mapping[int, tuple[Any, Any]],
    *,
    groups: Sequence[str] | None = None,
    layers: Iterable[int] | None = None,
    classes: Sequence[int] | None = None,
    cut: str | None = None,
    interchange_group: str | None = None,
    return_type: str = "logits",
    folds: int = 5,
    seed: int = 0,
    n_jobs: int = 1,
    progress: Callable[[str], None] | None = None,
    known: Mapping[int, Mapping[str, Any]] | None = None,
) -> ProbeReport:
    """`probe_tokens` on each ``subject -> (model, SubjectData)`` (and again with ``cut``
    masked in every layer), and with ``interchange_group`` the IIA of interchanging that
    token group at every layer between every ordered pair of distinct ``classes`` (all when
    not given) within a repetition, read from ``return_type``; ``n_jobs`` processes fit the
    probes. ``known``: subject -> `emg_lens.studies.subjects.known_of`.

    >>> import numpy as np, torch
    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.data import SubjectData
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> X = torch.randn(40, 6, 8, generator=torch.Generator().manual_seed(0)).numpy()
    >>> data = SubjectData.from_windows({"emg": 2, "acc": 4}, (X, np.arange(40) % 4))
    >>> report = probe_models({1: (model, data)}, groups=["emg"], cut="cross_modal",
    ...                       interchange_group="acc", folds=2)
    >>> len(report.probes), len(report.interchange)  # 3 layers (the last: after the blocks) x 2
    (6, 6)
    """
    if not subjects:
        raise ArgumentError("probe_models needs at least one subject's (model, data)")
    say = progress or (lambda message: None)
    cuts = [None] if cut is None else [None, cut]
    probe_rows, swap_rows, scores = [], [], {}
    for i, (subject, (model, data)) in enumerate(subjects.items(), 1):
        say(f"subject {subject} ({i} of {len(subjects)}): probes")
        with torch.inference_mode():  # the model's own accuracy on these windows, for chance
            predicted = predict(model, data.X_test, return_type=return_type)
        scores[f"subject {subject}"] = TrialScore.from_predictions(
            predicted, data.y_test, data.test_trials, model.cfg.n_classes,
            **{"unit": data.meta.get("trial_unit"), **(known or {}).get(subject, {})},
        )  # fmt: skip
        for c in cuts:
            table = probe_tokens(model, data, layers=layers, groups=groups, classes=classes,
                                 folds=folds, seed=seed, cut=c, n_jobs=n_jobs)  # fmt: skip
            probe_rows.append(table.assign(subject=subject, cut=c or NO_CUT))
        if interchange_group is None:
            continue
        chosen = range(data.n_classes) if classes is None else classes
        base, source = interchange_pairs(data, [(a, b) for a in chosen for b in chosen if a != b])
        for c in cuts:
            for layer in range(model.cfg.n_layers + 1):
                found = interchange(model, base, source, layer=layer, group=interchange_group,
                                    return_type=return_type, cut=c)  # fmt: skip
                swap_rows.append({"subject": subject, "cut": c or NO_CUT, "layer": layer,
                                  "group": interchange_group, **found.summary()})  # fmt: skip
    probes = _probe_table(probe_rows, ["subject", "cut"])
    predicts = "gesture" if classes is None else f"gesture among classes {list(classes)}"
    extra = {"interchange": interchange_group, "return_type": return_type}
    settings = _settings(subjects, probes, classes, cut, folds, seed, predicts, **extra)
    swaps = pd.DataFrame(swap_rows) if swap_rows else None
    return ProbeReport(probes, swaps, settings, chance_table(scores))


@checked
def probe_subjects(
    subjects: Mapping[int, tuple[Any, Any]] | tuple[Any, Any],
    *,
    groups: Sequence[str] | None = None,
    layers: Iterable[int] | None = None,
    classes: Sequence[int] | None = None,
    cut: str | None = None,
    transfer: bool = True,
    folds: int = 5,
    seed: int = 0,
    null_seeds: int = 3,
    n_jobs: int = 1,
    progress: Callable[[str], None] | None = None,
) -> ProbeReport:
    """What the tokens know about the subject: every model of ``subjects``
    (``subject -> (model, SubjectData)``; models with equal weights probed once) applied to the
    held-out windows of every subject, pooled (`emg_lens.data.pooled.pool_subjects`), or one
    ``(model, windows)`` pair of pooled windows, with a probe per layer and token group
    predicting each window's subject, the same on the random-init null (``null_seeds`` seeds
    from ``seed``) and on the whole input (`INPUT`); with ``transfer``, also the gesture probe
    folded leave-one-subject-out. How to read them: docs/guide/what-an-edge-carries.md, "What
    the tokens know about the subject".

    ``probes`` has `probe_tokens`' columns after ``subject`` (the subjects whose model it is,
    e.g. ``"1,2"``), ``cut``, ``model`` (`TRAINED`, `NULL` or `INPUT`), ``target``
    (``"subject"`` or `TRANSFER`) and ``seed`` (the null's; else -1); ``chance`` tests each
    distinct model on the pooled windows.

    >>> import numpy as np, torch
    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.data import SubjectData
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> def windows(s):
    ...     X = torch.randn(40, 6, 8, generator=torch.Generator().manual_seed(s)).numpy()
    ...     return SubjectData.from_windows({"emg": 2, "acc": 4}, (X, np.arange(40) % 4),
    ...                                     subject=s)
    >>> report = probe_subjects({1: (model, windows(1)), 2: (model, windows(2))},
    ...                         groups=["acc"], layers=[0], folds=2)
    >>> report.probes["subject"].unique().tolist()  # one model, probed once
    ['1,2']
    >>> report.probes["model"].unique().tolist(), report.probes["target"].unique().tolist()
    (['trained', 'random init', 'input'], ['subject', 'gesture, leave one subject out'])
    """
    from transformer_lens.tools.analysis import reinitialized

    from emg_lens.data.pooled import pool_subjects, window_labels
    from emg_lens.provenance import model_digest

    null_seeds = check_int(null_seeds, "null_seeds", minimum=1)
    say = progress or (lambda message: None)
    owners: dict[str, tuple[Any, list[Any]]] = {}
    if isinstance(subjects, tuple):  # one model on several subjects' windows
        model, pooled = subjects
        owners[""] = (model, ["pooled"])
        numbers = sorted(set(window_labels(pooled, "subject").tolist()))
    else:
        numbers = list(subjects)
        pooled = (
            pool_subjects([data for _, data in subjects.values()]) if len(numbers) > 1 else None
        )
        for subject, (model, _) in subjects.items():
            owners.setdefault(model_digest(model), (model, []))[1].append(subject)
    if len(numbers) < 2:
        raise ArgumentError(
            f"a subject probe needs the windows of two subjects or more, got {numbers}"
        )
    cuts = [None] if cut is None else [None, cut]
    rows, scores = [], {}
    for i, (model, mine) in enumerate(owners.values(), 1):
        label = ",".join(map(str, mine))
        say(f"model of subject(s) {label} ({i} of {len(owners)}): subject probes")
        with torch.inference_mode():
            predicted = predict(model, pooled.X_test)
        scores[f"model of {label}"] = TrialScore.from_predictions(
            predicted, pooled.y_test, pooled.test_trials, model.cfg.n_classes
        )
        try:
            nulls = [(NULL, reinitialized(model, seed + k), seed + k) for k in range(null_seeds)]
        except ValueError as exc:  # parameters no reset_parameters covers (an attached model)
            raise ArgumentError(
                f"the random-init null of subject(s) {label}'s model: {exc}"
            ) from None
        by_subject = ("subject", window_labels(pooled, "subject"), None)
        targets = [by_subject, (TRANSFER, None, "subject")] if transfer else [by_subject]
        for name, m, init in [(TRAINED, model, -1), *nulls, (INPUT, model, -1)]:
            for target, labels, leave_out in targets[: 1 if name == INPUT else None]:
                for c in cuts[: 1 if name == INPUT else None]:  # no cut reaches the input
                    table = probe_tokens(
                        m, pooled, layers=None if name == INPUT else layers, groups=groups,
                        classes=classes, labels=labels, folds=folds, seed=seed, cut=c,
                        n_jobs=n_jobs, leave_out=leave_out, hook=INPUT if name == INPUT else
                        "resid_pre",
                    )  # fmt: skip
                    rows.append(table.assign(subject=label, cut=c or NO_CUT, model=name,
                                             target=target, seed=init))  # fmt: skip
    probes = _probe_table(rows, ["subject", "cut", "model", "target"])
    predicts = "subject (pooled held-out windows), beside the random-init null and the input" + (
        " and the gesture left one subject out" if transfer else ""
    )
    settings = _settings(numbers, probes, classes, cut, folds, seed, predicts)
    settings["null_seeds"] = null_seeds
    return ProbeReport(probes, None, settings, chance_table(scores))


def _probe_table(rows: list[pd.DataFrame], first: list[str]) -> pd.DataFrame:
    """The probe tables of a run as one, the columns ``first`` leading."""
    probes = pd.concat(rows, ignore_index=True)
    return probes[[*first, *[c for c in probes.columns if c not in first]]]


def _settings(
    subjects: Iterable[Any],
    probes: pd.DataFrame,
    classes: Sequence[int] | None,
    cut: str | None,
    folds: int,
    seed: int,
    predicts: str,
    **extra: Any,
) -> dict[str, Any]:
    """A report's `ProbeReport.settings`: its subjects, the token groups probed (in the
    order ``probes`` first holds them), the classes, the cut, ``extra`` (what only that
    report records), the folds, the seed and what the probes predict."""
    return {
        "subjects": [int(s) for s in subjects],
        "groups": sorted(set(probes["group"]), key=list(probes["group"]).index),
        "classes": None if classes is None else [int(c) for c in classes],
        "cut": cut,
        **extra,
        "folds": folds,
        "seed": seed,
        "target": predicts,
    }
