"""Discovery as a study (``kind = "discovery"``): screen, verify and discover on every subject,
resumable in the provenance-keyed store (one cell per subject: an ablation study's provenance
plus the discovery's parameters), with tables and figures across subjects. The study file's
keys and the outputs: docs/guide/discovery.md, "A discovery study"."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from emg_lens.discovery.metrics import spearman_p
from emg_lens.discovery.plots import plot_faithfulness, plot_screen, plot_screen_vs_exact
from emg_lens.discovery.screen import miss_note, screen
from emg_lens.discovery.search import discover
from emg_lens.discovery.spec import DiscoverySpec
from emg_lens.discovery.stability import bootstrap_stability, subject_agreement
from emg_lens.model_folder import study_models
from emg_lens.output import StudyOutput, markdown_table, one_line
from emg_lens.provenance import code_digest
from emg_lens.stats.chance import (
    cell_fields,
    chance_markdown,
    chance_table,
    chance_warnings,
)
from emg_lens.stats.compare import format_p
from emg_lens.studies.check import CheckText
from emg_lens.studies.kinds import StudyKind, load_as
from emg_lens.studies.store import CellStore
from emg_lens.studies.subjects import cell_score, entry_provenance, known_of, load_entry
from emg_lens.train import predict
from emg_lens.user_code import StudyCode, require_builder

CELL = "discovery"  # the one cell of each subject


def _mean(values: list[float]) -> float:
    """The mean of the finite values (NaN: none)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


@dataclass
class DiscoveryStudyResult(StudyOutput):
    """The tables of a discovery study; `save` writes them with the figures
    (`emg_lens.output.StudyOutput`); its ``summary`` is one row per subject, the
    circuit found (``circuits``)."""

    spec: DiscoverySpec
    screen: pd.DataFrame
    circuits: pd.DataFrame
    curve: pd.DataFrame
    reused: int = 0
    recomputed: int = 0
    chance: pd.DataFrame | None = None  # each subject's unmasked accuracy beside chance

    @property
    def summary(self) -> pd.DataFrame:
        return self.circuits

    @property
    def consensus(self) -> pd.DataFrame:
        """Per candidate (its edge set), how many subjects' circuits keep it, and the mean
        estimated and exact effects."""
        kept = self.screen.groupby("edges", sort=False).agg(
            layer=("layer", "first"),
            head=("head", "first"),
            kind=("kind", "first"),
            subjects=("subject", "nunique"),
            kept=("kept", "sum"),
            estimate=("estimate", "mean"),
            exact=("exact", "mean"),
        )
        kept["kept_share"] = kept["kept"] / kept["subjects"]
        return kept.reset_index().sort_values(["kept_share", "estimate"], ascending=[False, True])

    @property
    def stability(self) -> pd.DataFrame:
        """The Jaccard index of every two subjects' circuits (`subject_agreement`)."""
        kept = self.screen[self.screen["kept"]].groupby("subject")["edges"].agg(set)
        return subject_agreement({s: kept.get(s, set()) for s in self.screen["subject"].unique()})

    def to_markdown(self) -> str:
        cols = ["subject", "candidates_kept", "candidates", "edges_kept", "edges"]
        cols += ["faithfulness", "cpr", "cmd", "accuracy_full", "accuracy_circuit"]
        cols += ["accuracy_empty", "classes_lost", "spearman", "missed_upper", "sampled"]
        cols += ["stability_jaccard"]
        cols = [c for c in cols if c in self.circuits]
        pairs = self.stability["jaccard"]
        across = (
            f"Circuits agree between subjects with a mean Jaccard index of {pairs.mean():.2f} "
            f"(min {pairs.min():.2f}, {len(pairs)} pairs; `stability.csv`); "
            "`stability_jaccard` is each subject's agreement with its circuits on bootstrap "
            f"resamples of its held-out trials, each with all its windows ({self.spec.resamples} "
            "resamples).\n\n"
            if len(pairs)
            else ""
        )
        top = self.consensus.head(10)[["edges", "kept_share", "estimate", "exact"]]
        return (
            f"# Discovery study {one_line(self.spec.name)}\n\n"
            + ("" if self.chance is None else chance_markdown(self.chance) + "\n")
            + f"Metric {self.spec.metric} on {one_line(self.spec.return_type)}, tau = "
            f"{self.spec.tau}: a candidate is cut while the circuit keeps more than 1 - tau of "
            "the metric's range from everything cut to the full model, and of every class's "
            "accuracy range (`classes_lost` names a class it did not keep).\n\n"
            + screen_note(self.circuits)
            + "\n\n"
            + areas_note(self.circuits)
            + across
            + markdown_table(self.circuits[cols])
            + "\n\n## Most kept candidates\n\n"
            + markdown_table(top)
            + "\n"
        )

    def tables(self) -> dict[str, pd.DataFrame]:
        """screen.csv, circuits.csv, curve.csv, consensus.csv, stability.csv and chance.csv."""
        return {
            "screen.csv": self.screen,
            "circuits.csv": self.circuits,
            "curve.csv": self.curve,
            "consensus.csv": self.consensus,
            "stability.csv": self.stability,
            **({} if self.chance is None else {"chance.csv": self.chance}),
        }

    def figures(self) -> dict[str, plt.Figure]:
        """The screen map averaged over subjects, the pooled screen-vs-exact scatter and every
        subject's faithfulness curve."""
        metric = self.spec.metric
        figs = {"faithfulness": plot_faithfulness(self.curve, tau=self.spec.tau, metric=metric)}
        if (self.screen["exact"].notna() & (self.screen["method"] != "exact")).any():
            figs["screen_vs_exact"] = plot_screen_vs_exact(self.screen, metric=metric)
        if self.screen["head"].notna().all():
            figs["screen"] = plot_screen(self.screen, metric=metric)
        pairs = self.screen.dropna(subset=["query_group", "key_group"])
        if len(pairs):
            figs["circuit_groups"] = _circuit_circle(pairs, self.screen["subject"].nunique())
        return figs

    def console(self) -> str:
        """summary.md and the cells reused and computed: what ``emg-lens study run`` and
        ``emg-lens discover`` print."""
        # summary.md shows every accuracy beside chance; the warnings again, last
        warnings = [] if self.chance is None else chance_warnings(self.chance)
        chance = "".join(f"\n{line}" for line in warnings)
        return (
            f"{self.to_markdown()}\ncells: {self.reused} reused, {self.recomputed} recomputed"
            + chance
        )


def _span(values: pd.Series, fmt: str, most: bool = False) -> str:
    """``"0.93"`` for one subject (or equal values), else ``"0.81 (subjects 0.62 to 0.93)"``:
    the median (``most``: the largest) and the range of the finite values."""
    values = values[np.isfinite(values)]
    if values.empty:
        return "undefined (tied estimates)"
    center = format(float(values.max() if most else values.median()), fmt)
    if values.min() == values.max():
        return center
    return f"{center} (subjects {values.min():{fmt}} to {values.max():{fmt}})"


def _rhos(circuits: pd.DataFrame, column: str, points: str) -> str:
    """Each subject's Spearman ρ in ``column`` with the number of points it is over
    (``points``) and its p (`spearman_p`): ``subject 1 -0.80 over 4 points (p = 0.33); ...``,
    the subjects without one (fewer than 2 points, or tied estimates) named after them."""
    subjects = circuits.get("subject", pd.Series(range(1, len(circuits) + 1), circuits.index))
    given, undefined = [], []
    for subject, rho, k in zip(subjects, circuits[column], circuits[points]):
        if not np.isfinite(rho):
            undefined.append(str(subject))
            continue
        p = format_p(spearman_p(float(rho), int(k)), 2, "p")
        given.append(f"subject {subject} {rho:.2f} over {k:.0f} points ({p})")
    if undefined:
        word = "subject" if len(undefined) == 1 else "subjects"
        given.append(f"undefined for {word} {', '.join(undefined)} (under 2 points, or tied)")
    return "; ".join(given)


def areas_note(circuits: pd.DataFrame) -> str:
    """MIB's CPR and CMD of the subjects' faithfulness curves, in words (empty for circuits
    stored without them).

    >>> print(areas_note(pd.DataFrame({"cpr": [0.81, 0.75], "cmd": [0.12, 0.2]})))
    ... # doctest: +NORMALIZE_WHITESPACE
    Over circuit sizes (MIB's areas, Mueller et al. 2025, of the search's own curve: the
    faithfulness of `curve.csv` against the share of the family's edges kept, closed by the
    empty circuit at 0; MIB measures fixed shares instead, so these are not its benchmark
    scores): CPR 0.78 (subjects 0.75 to 0.81), the area under the curve (higher is better);
    CMD 0.16 (subjects 0.12 to 0.20), the area between the curve and 1 (lower is better).
    <BLANKLINE>
    <BLANKLINE>
    """
    if "cpr" not in circuits:
        return ""
    return (
        "Over circuit sizes (MIB's areas, Mueller et al. 2025, of the search's own curve: the "
        "faithfulness of `curve.csv` against the share of the family's edges kept, closed by "
        "the empty circuit at 0; MIB measures fixed shares instead, so these are not its "
        f"benchmark scores): CPR {_span(circuits['cpr'], '.2f')}, the area under the curve "
        "(higher is "
        f"better); CMD {_span(circuits['cmd'], '.2f')}, the area between the curve and 1 "
        "(lower is better).\n\n"
    )


def screen_note(circuits: pd.DataFrame) -> str:
    """What the screen's verification says over subjects, in words (the examples show both
    forms: candidates the screen scored, and every candidate exact, with no ρ).

    >>> print(screen_note(pd.DataFrame({"n": [10.0], "spearman": [0.9], "sampled": [10.0],
    ...     "sample_hits": [0.0], "missed_rate_upper": [0.259], "missed_upper": [25.9],
    ...     "unmeasured": [100.0], "spearman_measured": [0.8], "measured": [30.0],
    ...     "screened": [120.0], "screened_top": [8.0]})))
    ... # doctest: +NORMALIZE_WHITESPACE
    Scored by the screen: 120 candidates per subject, the others by exact masked passes
    (`method` in screen.csv). Screen vs exact: Spearman ρ of the screen's estimate against the
    exact effect over those of the verified top 10 candidates the screen scored (`spearman`):
    subject 1 0.90 over 8 points (p = 0.0046); over the candidates measured exactly per
    subject (`spearman_measured`): subject 1 0.80 over 30 points (p = 1.1e-07). Missed: at most
    26 % of the 100 candidates left unmeasured belong in the top 10, 25.9 candidates
    (`missed_upper`), from 10 draws: unmeasured candidates measured exactly at random, 0 of
    which belonged there (a one-sided 95 % Clopper-Pearson bound; `sampled`). 10 draws cannot
    certify a miss rate below 26 %: draw more (`verify_sample = N` in the study file,
    `--verify-sample N`, one exact pass each) to bound it; 59 draws that find no miss bound it
    at 5 %.
    >>> print(screen_note(pd.DataFrame({"n": [10.0], "spearman": [float("nan")],
    ...     "sampled": [0.0], "screened": [0.0], "screened_top": [0.0], "screen": ["ig"],
    ...     "ig_steps": [5]})))  # doctest: +NORMALIZE_WHITESPACE
    Scored by exact masked passes: every candidate's effect was computed exactly, so the
    screen (integrated gradients, EAP-IG, 5 path points; `screen`) scored none and has no ρ
    against the exact effects; none can have been missed (`missed_upper` 0).
    """
    top, words = int(circuits["n"].max()), _estimator_words(circuits)
    screened = circuits.get("screened")  # None in cells stored before it was recorded
    if screened is not None and not (screened > 0).any():
        return (
            "Scored by exact masked passes: every candidate's effect was computed exactly, so "
            f"the screen{words} scored none and has no ρ against the exact effects; none can "
            "have been missed (`missed_upper` 0)."
        )
    text, over = f"Screen vs exact{words}: ", f"the verified top {top} candidates"
    if screened is not None:
        text = (
            f"Scored by the screen{words}: {_span(screened, '.0f')} candidates per subject, "
            "the others by exact masked passes (`method` in screen.csv). Screen vs exact: "
        )
        over = f"those of {over} the screen scored"
    points = "screened_top" if screened is not None else "n"
    text += (
        f"Spearman ρ of the screen's estimate against the exact effect over {over} "
        f"(`spearman`): {_rhos(circuits, 'spearman', points)}"
    )
    if "spearman_measured" in circuits and circuits["spearman_measured"].notna().any():
        text += (
            "; over the candidates measured exactly per subject (`spearman_measured`): "
            f"{_rhos(circuits, 'spearman_measured', 'measured')}"
        )
    if not (circuits["sampled"] > 0).any():
        unmeasured = 0 if screened is None else (screened - circuits["measured"]).max()
        return text + (
            ". Missed: none can be: every candidate was measured exactly (`missed_upper` 0)."
            if unmeasured == 0
            else f". Missed: not bounded: none of the {unmeasured:.0f} candidates left "
            "unmeasured was drawn (`missed_upper` NaN)."
        )
    draws = circuits["sampled"]
    left = f" {_span(circuits['unmeasured'], '.0f')}" if "unmeasured" in circuits else ""
    note = miss_note(int(draws[draws > 0].min()), ask=MORE_DRAWS)
    return text + (
        f". Missed: at most {_percent_span(circuits['missed_rate_upper'])} of the{left} "
        f"candidates left unmeasured belong in the top {top}, "
        f"{_span(circuits['missed_upper'], '.1f', most=True)} candidates (`missed_upper`), "
        f"from {_span(draws, '.0f')} draws: unmeasured candidates measured exactly at random, "
        f"{_span(circuits['sample_hits'], '.0f')} of which belonged there (a one-sided 95 % "
        "Clopper-Pearson bound; `sampled`)." + (f" {note}" if note else "")
    )


MORE_DRAWS = "`verify_sample = N` in the study file, `--verify-sample N`"
"""Where a discovery study asks for more draws (`miss_note`)."""


def _percent_span(rates: pd.Series) -> str:
    """``"53 %"``, or ``"53 % (subjects 26 % to 53 %)"``: the largest of the rate bounds
    (rounded up) and their range."""
    shares = np.ceil(np.round(100 * rates[np.isfinite(rates)], 6))
    most = f"{shares.max():.0f} %"
    return (
        most
        if shares.min() == shares.max()
        else f"{most} (subjects {shares.min():.0f} % to {most})"
    )


def _estimator_words(circuits: pd.DataFrame) -> str:
    """`` (integrated gradients, EAP-IG, 5 path points)`` for circuits screened with EAP-IG,
    `` (plain attribution)`` for the plain screen, `` (relevance patching, RelP)`` for RelP;
    empty where the table does not say."""
    if "screen" not in circuits:
        return ""
    if (circuits["screen"] == "ig").all():
        steps = _span(circuits["ig_steps"].astype(float), ".0f")
        return f" (integrated gradients, EAP-IG, {steps} path points; `screen`)"
    if (circuits["screen"] == "plain").all():
        return " (plain attribution; `screen`)"
    if (circuits["screen"] == "relp").all():
        return " (relevance patching, RelP; `screen`)"
    return " (screens: " + ", ".join(sorted(set(circuits["screen"]))) + "; `screen`)"


def _subject_cell(spec: DiscoverySpec, model: Any, data: Any, progress: bool) -> dict[str, Any]:
    family = spec.candidates(model)
    screened = screen(
        model,
        data,
        family=family,
        metric=spec.metric,
        return_type=spec.return_type,
        estimator=spec.screen,
        ig_steps=spec.ig_steps,
    )
    verified = screened.verify(top=min(spec.verify_top, len(family)), sample=spec.verify_sample)
    found = discover(
        model, data, tau=spec.tau, screened=verified, progress=progress, method=spec.method
    )
    stability = bootstrap_stability(found, resamples=spec.resamples, verify_top=spec.verify_top)
    y, n_classes = np.asarray(screened.data.y_test), model.cfg.n_classes
    pred = predict(model, screened.data.X_test, return_type=spec.return_type)
    kept = {str(c.edge_set) for c in found.kept}
    table = verified.table.assign(kept=verified.table["edges"].isin(kept))
    return {
        "value": found.faithfulness,  # what the store requires of a whole cell
        "screen": json.loads(table.to_json(orient="records")),
        "summary": {
            **found.summary(),
            "screen": screened.estimator,
            "ig_steps": screened.ig_steps if screened.estimator == "ig" else None,
            **verified.agreement,
            "stability_jaccard": _mean(stability),
            "resamples": len(stability),
        },
        "curve": json.loads(found.curve.to_json(orient="records")),
        "baseline": screened.baseline,
        "baseline_accuracy": screened.baseline_accuracy,
        # the unmasked model's correct windows and the windows per class, and its trials'
        # majority votes: its chance check
        "correct": int((pred == y).sum()),
        "class_counts": np.bincount(y, minlength=n_classes).tolist(),
        **cell_fields(pred, y, screened.data.test_trials, n_classes),
    }


def run_discovery(
    spec: DiscoverySpec | str | Path | dict,
    *,
    models: str | Path | Mapping[int, tuple[Any, Any]] | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    device: Any = None,
    allow_code: bool | Iterable[str] = False,
) -> DiscoveryStudyResult:
    """Run a discovery study on every subject (``models`` overrides ``spec.models``: a folder
    of ``subject_<N>/`` checkpoints, or ``{subject: (model, SubjectData)}``). With ``out_dir``
    each subject's result is stored with its provenance and reused by a rerun while model, data,
    code and parameters are unchanged; tables and figures are written there. ``device``: where
    the models run (None: where they are). ``allow_code``: as `emg_lens.studies.run_study`
    takes it; checkpoints holding the user's own modules without the study's ``modules`` are a
    `CheckpointError` saying what to add, before anything runs."""
    spec = load_as(spec, DiscoverySpec)  # or SpecError
    files = spec.code_files()  # located and hashed; refused here before anything runs
    builder = StudyCode.load(files, allow_code).modules
    found = study_models(
        models if isinstance(models, Mapping) else models or spec.models, spec.subjects
    )
    require_builder([e for e in found.values() if not isinstance(e, tuple)], builder)
    store = CellStore(out_dir, spec.fingerprint()) if out_dir is not None else None
    code = code_digest() if store is not None else ""
    cells, reused = {}, 0
    for subject_id, entry in tqdm(
        found.items(), desc=f"discover {spec.name}", disable=not progress
    ):
        provenance = None
        if store is not None:
            provenance = {
                **entry_provenance(spec, entry, subject_id, code, builder),
                "metric": spec.metric,
                "spec": spec.fingerprint(),
            }
            cell = store.get(subject_id, CELL, provenance=provenance)
            if cell is not None:
                cells[subject_id], reused = cell, reused + 1
                continue
        subject = load_entry(entry, device, builder)
        # As the store will give it back (sorted keys, JSON numbers): a rerun that reuses the
        # cell then builds the very same tables.
        cell = _subject_cell(spec, subject.model, subject.data, progress)
        cells[subject_id] = json.loads(json.dumps(cell, sort_keys=True))
        if store is not None:
            store.put(subject_id, CELL, cells[subject_id], provenance=provenance)
    result = _result(spec, cells, reused, {s: known_of(e) for s, e in found.items()})
    if out_dir is not None:
        result.save(out_dir)
    return result


def _result(
    spec: DiscoverySpec, cells: dict[int, dict], reused: int, known: dict[int, dict]
) -> DiscoveryStudyResult:
    screens, circuits, curves = [], [], []
    for subject, cell in cells.items():
        screens.append(pd.DataFrame(cell["screen"]).assign(subject=subject))
        circuits.append({"subject": subject, **_flat(cell["summary"])})
        curves.append(pd.DataFrame(cell["curve"]).assign(subject=subject))
    screen_table = pd.concat(screens, ignore_index=True)
    screen_table = screen_table[["subject", *[c for c in screen_table if c != "subject"]]]
    counts = {
        # the unmasked model's correct windows, of the windows per class
        f"subject {subject}": cell_score(
            {**cell, "class_correct": [cell["correct"]], "class_total": cell["class_counts"]},
            **known.get(subject, {}),
        )
        for subject, cell in cells.items()
        if "class_counts" in cell  # a cell stored before the check: no counts to test
    }
    return DiscoveryStudyResult(
        spec=spec,
        screen=screen_table,
        circuits=pd.DataFrame(circuits),
        curve=pd.concat(curves, ignore_index=True),
        reused=reused,
        recomputed=len(cells) - reused,
        chance=chance_table(counts) if len(counts) == len(cells) else None,
    )


def _flat(summary: dict[str, Any]) -> dict[str, Any]:
    """A subject's summary as one table row: the per-class accuracies as columns
    ``accuracy_circuit_class<k>``, the lost classes as text (empty: none lost)."""
    row = {}
    for key, value in summary.items():
        if key.startswith("class_accuracy_"):
            for label, accuracy in value.items():
                row[f"accuracy_{key.removeprefix('class_accuracy_')}_class{label}"] = accuracy
        elif key == "classes_lost":
            row[key] = " ".join(map(str, value))
        else:
            row[key] = value
    return row


def _circuit_circle(pairs: pd.DataFrame, n_subjects: int) -> plt.Figure:
    """The circuits' group -> group edges as a circle plot: for each query group and key
    group, the share of the candidates (layers x heads) of that pair that the subjects'
    circuits keep."""
    from emg_lens.geometry.draw import plot_circle

    share = pairs.groupby(["query_group", "key_group"], sort=False)["kept"].mean()
    groups = list(dict.fromkeys([*pairs["query_group"], *pairs["key_group"]]))
    weights = np.array([[share.get((q, k), np.nan) for k in groups] for q in groups], float)
    return plot_circle(
        weights,
        groups,
        title="The circuits' edges between token groups",
        units="share of the pair's candidates (layer x head) kept",
        n_subjects=n_subjects,
    )


def check_discovery(
    spec: DiscoverySpec, *, study_file: str | Path | None = None, **target: Any
) -> CheckText:
    """What ``emg-lens study check`` prints of a discovery study: its parameters, the Python
    file it names (listed, never run), the models it runs on (or, with none found, a preset's
    layout: ``target`` is ``models``, ``preset``, ``layers`` and ``heads`` as
    `emg_lens.studies.check.check_target` takes them) and the candidates it screens there,
    by layer. Nothing is computed.

    >>> spec = DiscoverySpec.from_dict({"name": "c", "models": "/nowhere", "tau": 0.1})
    >>> print(check_discovery(spec, layers=2, heads=2).splitlines()[-1])
    candidates: 36 (layer 0: 18, layer 1: 18)
    """
    from emg_lens.studies.check import check_target, code_note

    screened_by = f"{spec.screen} screen" + (
        f" ({spec.ig_steps} steps)" if spec.screen == "ig" else ""
    )
    lines = [
        f"{spec.name}: discovery study, {spec.metric} on {spec.return_type!r}, tau {spec.tau}, "
        f"{screened_by}, {spec.method} search, {spec.verify_top} verified exactly per subject, "
        f"{spec.resamples} bootstrap resamples"
    ]
    lines += code_note(spec, study_file)
    checked = check_target(spec, **target)
    subjects = "unknown" if checked.n_subjects is None else checked.n_subjects
    lines.append(f"on {checked.source}; subjects: {subjects}")
    if checked.model is not None:
        family = spec.candidates(checked.model)
        per_layer = pd.Series([c.layer for c in family]).value_counts().sort_index()
        counts = ", ".join(f"layer {layer}: {n}" for layer, n in per_layer.items())
        lines.append(f"candidates: {len(family)} ({counts})")
    return CheckText("\n".join(lines), checked.stops)


KIND = StudyKind(
    spec=DiscoverySpec,
    run=run_discovery,
    check=check_discovery,
    out="runs/discovery",
    refuses={
        "wait_timeout": "whose processes claim no subjects and wait for none; the option is "
        "for ablation and training studies",
        "overrides": "of trained models: [data] and [train] overrides are for training "
        "studies (kind = 'training')",
    },
)
"""The discovery kind (`emg_lens.studies.kinds`)."""
