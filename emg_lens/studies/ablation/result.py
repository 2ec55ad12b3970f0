"""`StudyResult`: the tidy per-subject table, the summary with statistics, and the figures.
``per_subject`` has one row per (subject, condition, metric), ``per_class`` per (subject,
condition, class); ``summary`` per (condition, metric): the change of the mean (``delta``;
``delta_pct`` for the prediction metrics: the ratio of means, the IsoNet paper's) with its 95 %
interval over subjects (`emg_lens.stats.compare.delta_t_intervals`), the rank-biserial effect
size, the test and the p corrected over the family the spec names. `StudyResult.power_note`
states the smallest corrected p the design can reach.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from emg_lens.errors import ArgumentError, checked
from emg_lens.output import StudyOutput, markdown_table, one_line, prose
from emg_lens.stats.chance import chance_console, chance_markdown, chance_table
from emg_lens.stats.compare import (
    TEST_NAMES,
    clopper_pearson,
)
from emg_lens.stats.metrics import RELATIVE_METRICS, UNITS, delta_column, delta_name
from emg_lens.stats.units import TRIAL_WINDOW_FIELDS, class_trial_cis
from emg_lens.studies.ablation.erasure import erasure_table, side_effects
from emg_lens.studies.ablation.spec import StudySpec
from emg_lens.studies.ablation.summary import (
    CONDITION_COLUMNS,
    STATISTIC_COLUMNS,
    STATISTIC_NAMES,
    STRUCTURAL,
    correction_phrase,
    family_sizes,
    legend,
    power_note,
    summarize,
)
from emg_lens.studies.ablation.verdicts import claims_markdown, evaluate_claims, format_claims
from emg_lens.studies.subjects import cell_score
from emg_lens.train.baseline import below_baseline

INTERVAL = "Student's t spanned with the claims' correction for the subjects' skewness"

TRIAL_FIELDS = ("trial_correct", "trial_total", "design_effect")
"""What a cell holds of its trials (`emg_lens.stats.chance.cell_fields`); None in a cell
stored before trials were counted, whose chance check then counts windows and says so."""


@checked
@dataclass
class StudyResult(StudyOutput):
    """What an ablation study produced. `figures` draws; `save` writes everything to a folder
    (`emg_lens.output.StudyOutput`). ``per_subject`` and ``summary`` hold one row per metric;
    `of_metric` restricts to one, and `baseline`, `table3` and `per_class` show the first."""

    spec: StudySpec
    per_subject: pd.DataFrame
    summary: pd.DataFrame
    # class index -> label as figures print it (the checkpoints' ``classes``: gesture numbers,
    # and names where the dataset has them), when every subject has the same; and named groups
    # of class indices its class figure marks (the planted ones)
    class_labels: tuple[str, ...] | None = None
    marked_classes: dict[str, list[int]] = field(default_factory=dict)
    # cells read from the store, computed here, and of those replacing one of other provenance
    reused: int = 0
    recomputed: int = 0
    stale: int = 0
    # subject -> what the chance check knows of its model beyond the cells
    # (`emg_lens.studies.subjects.known_of`: train_accuracy, placement)
    known: dict[int, dict[str, Any]] = field(default_factory=dict)
    # subject computed in this run -> how its conditions ran and why
    # (`emg_lens.studies.ablation.stacking.ConditionForm.record`): the run's, not the cells'
    condition_forms: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_table(
        cls,
        spec: StudySpec,
        per_subject: pd.DataFrame,
        class_labels: Sequence[str] | None = None,
        marked_classes: Mapping[str, list[int]] | None = None,
    ) -> StudyResult:
        # (a lazy copy: the caller's table is left as it was)
        per_subject = per_subject.assign(layer=per_subject["layer"].astype("Int64"))
        return cls(
            spec,
            per_subject,
            summarize(per_subject, spec.stats),
            None if class_labels is None else tuple(map(str, class_labels)),
            dict(marked_classes or {}),
        )

    def of_metric(self, metric: str | None = None) -> StudyResult:
        """The result of one of the study's metrics (None: its first), as if it had named
        that metric alone."""
        metric = self.spec.metric if metric is None else metric
        if metric not in self.spec.metrics:
            raise ArgumentError(
                f"metric {metric!r} is not one of this study's metrics {list(self.spec.metrics)}"
            )
        if len(self.spec.metrics) == 1:
            return self
        return replace(
            self,
            spec=replace(self.spec, metrics=(metric,)),
            per_subject=_rows_of(self.per_subject, metric),
            summary=_rows_of(self.summary, metric),
        )

    @property
    def baseline(self) -> pd.Series:
        """Per-subject baseline value of the first metric."""
        ps = self.of_metric().per_subject
        return ps[ps["intervention"] == "baseline"].set_index("subject")["value"]

    def table3(self, metric: str | None = None) -> pd.DataFrame:
        """The paper's Table-3 layout for ``metric`` (None: the first): one row per (mode,
        layer), one column per intervention, cells ``"Δ% stars"`` (``"Δ stars"`` for a
        metric reported as an absolute change, `emg_lens.stats.metrics.delta_name`)."""
        result = self.of_metric(metric)
        s = result.summary
        # one layer, or the layer set of an "all" / "explicit" / range condition
        layer = [
            str(layers) if pd.isna(v) else str(int(v)) for v, layers in zip(s["layer"], s["layers"])
        ]
        cell = s[delta_column(result.spec.metric)].map(_delta_text(result.spec.metric))
        wide = s.assign(layer=layer, cell=cell + " " + s["stars"]).pivot_table(
            index=["mode", "layer", "heads"],
            columns="intervention",
            values="cell",
            aggfunc="first",
            sort=False,
        )
        wide.columns.name = None
        return wide.reset_index()

    def power_note(self) -> str:
        """The design's floor (`power_note`): n subjects, the test and the correction."""
        return power_note(
            len(self.baseline), family_sizes(self.summary, self.spec.stats), self.spec.stats
        )

    def structural_note(self) -> str:
        """Names the structural zeros (stars ``≡0``), if any: conditions whose mask cannot
        change the scored output, left out of the correction family."""
        summary = self.of_metric().summary
        zero = summary[summary["stars"] == STRUCTURAL]
        if zero.empty:
            return ""
        names = ", ".join(
            f"{r.intervention} ({r.mode}" + ("" if pd.isna(r.layer) else f" {r.layer}") + ")"
            for r in zero.itertuples()
        )
        return (
            f"\n{STRUCTURAL}: structural zeros, whose masks cut no edge on these models or only "
            f"last-layer rows the readout does not read, so they cannot change the scored "
            f"output: {names}. Not tested, and left out of the correction family (m above).\n"
        )

    def _counts(self) -> pd.DataFrame:
        """One row per (subject, condition) with its per-class counts (the same for every
        metric)."""
        return self.of_metric().per_subject

    def per_class(self) -> pd.DataFrame:
        """One row per (subject, condition, class index): ``correct``, ``total``,
        ``accuracy`` and its 95 % interval ``ci_low``, ``ci_high`` (NaN for a class without
        test windows), beside the condition columns: over the class's ``trials``
        (`emg_lens.stats.units.class_trial_cis`), or over windows (``unit`` ``"window"``) for a
        cell stored without its trials."""
        rows, intervals = [], []
        counts = self._counts()
        has_counts = "class_correct" in counts.columns
        for r in counts.itertuples(index=False) if has_counts else ():
            condition = {"subject": r.subject, **{c: getattr(r, c) for c in CONDITION_COLUMNS}}
            record: list[Any] = [getattr(r, f, None) for f in TRIAL_WINDOW_FIELDS]
            by_trial = all(isinstance(v, (list, tuple, np.ndarray)) for v in record)
            if by_trial:
                trial_class, windows, hits = record
                low, high, trials = class_trial_cis(trial_class, windows, hits, len(r.class_total))
            for index, (hit, total) in enumerate(zip(r.class_correct, r.class_total)):
                rows.append(
                    {
                        **condition,
                        "class": index,
                        "correct": int(hit),
                        "total": int(total),
                        "accuracy": hit / total if total else float("nan"),
                        "trials": int(trials[index]) if by_trial else pd.NA,
                        "unit": "trial" if by_trial else "window",
                    }
                )
                intervals.append((low[index], high[index]) if by_trial else None)
        columns = ["subject", *CONDITION_COLUMNS, "class", "correct", "total", "accuracy"]
        table = pd.DataFrame(rows, columns=[*columns, "trials", "unit"])
        over_windows = clopper_pearson(table["correct"], table["total"])
        for i, name in enumerate(("ci_low", "ci_high")):
            table[name] = [
                float(over_windows[i][j]) if interval is None else float(interval[i])
                for j, interval in enumerate(intervals)
            ]
        table["layer"] = table["layer"].astype("Int64")
        table["trials"] = table["trials"].astype("Int64")
        return table[[*columns, "ci_low", "ci_high", "trials", "unit"]]

    def class_accuracy(self, classes: dict[str, list[int]] | None = None) -> pd.DataFrame:
        """Per-subject accuracy restricted to groups of class indices (e.g. the synthetic
        data's ``{"interaction": [8, 9, 10, 11]}``); all classes when ``classes`` is None."""
        rows = []
        for r in self._counts().itertuples(index=False):
            correct_, total = np.asarray(r.class_correct), np.asarray(r.class_total)
            groups = classes or {"all": list(range(len(total)))}
            for name, idx in groups.items():
                rows.append(
                    {
                        "subject": r.subject,
                        "key": r.key,
                        "intervention": r.intervention,
                        "mode": r.mode,
                        "layer": r.layer,
                        "classes": name,
                        "accuracy": correct_[idx].sum() / max(total[idx].sum(), 1),
                    }
                )
        return pd.DataFrame(rows)

    def claims(self) -> pd.DataFrame:
        """The study's declared claims (``[[claims]]``), each tested on the class counts of its
        condition as the design is, paired (`emg_lens.studies.ablation.claims`; the study's
        ``claims_test`` and correction): one row per claim with its verdict; an empty table
        when the study declares none."""
        spec = self.spec
        return evaluate_claims(
            spec.claims,
            dict(spec.class_groups),
            self._counts(),
            spec.stats.test,
            spec.stats.correction,
            claims_test=spec.stats.claims_test,
        )

    def claims_note(self, claims: pd.DataFrame | None = None) -> str:
        """The claims as the console prints them, under a line naming their tests (empty when
        the study declares none)."""
        claims = self.claims() if claims is None else claims
        if claims.empty:
            return ""
        return (
            f"Claims over {claims['n'].max()} subjects, each with the test that decided it:\n"
            + format_claims(claims)
        )

    def chance(self) -> pd.DataFrame | None:
        """Each subject's unmasked score beside chance (`emg_lens.stats.chance.chance_table`,
        from the baseline cells' counts), over trials, or over windows for cells stored without
        trial counts; None for cells without class counts."""
        counts = self._counts()
        if "class_correct" not in counts.columns:
            return None
        base = counts[counts["intervention"] == "baseline"]
        scores = {}
        for cell in base.to_dict("records"):
            known = self.known.get(cell["subject"], {})
            scores[f"subject {cell['subject']}"] = cell_score(cell, **known)
        return chance_table(scores)

    def erasures(self) -> pd.DataFrame | None:
        """Each erasure beside its placebo (`emg_lens.studies.ablation.erasure.erasure_table`);
        None for a study without erasure."""
        if not any(i.erase is not None for i in self.spec.interventions):
            return None
        return erasure_table(self.spec, self.per_subject)

    def side_effects(self) -> pd.DataFrame | None:
        """Each erasure's changes of the classes outside its concept
        (`emg_lens.studies.ablation.erasure.side_effects`); None for a study without erasure."""
        if not any(i.erase is not None for i in self.spec.interventions):
            return None
        return side_effects(self.spec, self.per_subject)

    def _erasure_markdown(self) -> str:
        """summary.md's section on erasures (empty for a study without)."""
        table = self.erasures()
        if table is None:
            return ""
        columns = [c for c in table.columns if c not in ("concept", "tokens")]
        sides = side_effects(self.spec, self.per_subject)  # the study has erasures
        text = (
            "\n## Erasure beside its placebo\n\nEach erasure (a LEACE eraser of the concept, "
            "fitted on each subject's training windows at hook_resid_pre of the layers named, "
            "applied to the held-out ones) beside its placebo (a random subspace of the same "
            "rank removed, each window moved as far): erasure_delta and placebo_delta are the "
            "mean over subjects of each subject's change from the baseline, difference their "
            f"mean paired difference, p its {TEST_NAMES[self.spec.stats.claims_test]} over "
            "subjects (uncorrected): the whole model's change, the concept's and the side "
            "effects together. concept_delta (concept_placebo_delta): the mean change of the "
            "accuracy of the concept's own classes (n_concept_classes: how many) under the "
            "erasure (the placebo; empty for a concept that is not classes). side_effect: the "
            "largest mean drop of a class outside the concept (side_effect_class), of "
            "n_side_classes such classes. "
            "rank: the smallest rank of the erasers over subjects and layers, of full_rank "
            "(the concept's values less one; a smaller rank left a weak direction below "
            "concept-erasure's absolute svd_tol); left: the largest share of the concept's "
            "cross-covariance an eraser leaves on its fit windows.\n\n"
            + markdown_table(table[columns], ".3f")
            + "\n"
        )
        if len(sides):
            text += (
                "\n### Side effects: the classes outside each concept\n\n"
                + markdown_table(sides, ".3f")
                + "\n"
            )
        return text

    def to_markdown(self) -> str:
        base = self.baseline
        first = self.spec.metric
        chance = self.chance()
        claims = ""
        key = legend(markdown=True) + "\n\n"  # below the first table with stars
        if self.spec.claims:  # what was expected comes first (issue 41, item 2)
            stats = self.spec.stats
            claims = claims_markdown(self.claims(), TEST_NAMES[stats.claims_test], stats.correction)
            claims += f"\n{key}## Results\n"
            key = ""
        description = f"{prose(self.spec.description)}\n\n" if self.spec.description else ""
        head = (
            f"# {one_line(self.spec.name)}\n\n{description}"
            # a warning first (issue 41 item 3), then the claims it qualifies (item 2)
            + (claims if chance is None else chance_markdown(chance, between=claims + "\n"))
            + f"\nBaseline {first}: {base.mean():.3f} "
            f"± {base.std(ddof=1) if len(base) > 1 else 0:.3f} ({_over(base)}); "
            f"{self.spec.stats.test}, {correction_phrase(self.spec.stats)}"
            + ("" if len(self.spec.metrics) == 1 else ", within each metric's table")
            + f".\n\n{self.power_note()}\n\n{key}{STATISTIC_COLUMNS[self.spec.stats.test]}: "
            f"the test's statistic ({STATISTIC_NAMES[self.spec.stats.test]}).\n"
            + self.structural_note()
        )
        tables = "".join(self._metric_table(m) for m in self.spec.metrics)
        return head + tables + self._erasure_markdown()

    def _metric_table(self, metric: str) -> str:
        """One metric's section of summary.md: how its change is reported, and its table."""
        result = self.of_metric(metric)
        base = result.baseline
        if metric in RELATIVE_METRICS:
            delta = (
                "Δ% (delta_pct) = 100 (masked − baseline) / baseline of the means (the ratio of "
                "means, the IsoNet paper's Δ%; claims report the mean of each subject's Δ%), "
                f"with a 95% interval over subjects of the linearised ratio ({INTERVAL}; "
                "ci_low, ci_high, in %, never below −100 %: no accuracy loses more than all of "
                "it). In simulation (docs/trust.md) it covered 0.94–0.98 of the population's "
                "change where subjects' changes are symmetric, 0.945–0.953 of exponential "
                "losses at 6–20 subjects; it takes the subjects for a sample of the "
                "population: where a part of them carries the change (half of them, or a rare "
                "subgroup), it covers less than 95 % with few subjects"
            )
            cols = ["delta_pct"]
        else:
            delta = (
                f"Δ (delta) = masked − baseline of the means, in {UNITS[metric]} (an absolute "
                "change: a ratio to this baseline means nothing), with a 95% interval over "
                f"subjects ({INTERVAL}; ci_low, ci_high, in the same units)"
            )
            cols = ["delta"]
        title = (
            f"\n## {metric}\n\nBaseline {metric}: {base.mean():.4g} "
            f"± {base.std(ddof=1) if len(base) > 1 else 0:.3g} ({_over(base)}). {delta}.\n\n"
        )
        columns = [
            *("intervention", "mode", "layer", "layers", "heads", "n", "mean", *cols),
            *("ci_low", "ci_high", "r_rb", "U", "p", "p_corr", "stars"),
        ]
        floatfmt = ".3f" if metric in RELATIVE_METRICS else ".4g"
        # the statistic's column named by what it holds (summary.csv keeps ``U`` for all)
        statistic = {"U": STATISTIC_COLUMNS[self.spec.stats.test]}
        table = result.summary[columns].rename(columns=statistic)
        return title + markdown_table(table, floatfmt) + "\n"

    def figures(self) -> dict:
        """Matplotlib figures by name: ``boxplots`` (the paper's Figure 5), ``heatmap``, and
        ``class_deltas`` (Δ accuracy per class for the conditions with the largest change),
        for the first metric; ``boxplots_<metric>`` and ``heatmap_<metric>`` for each other
        metric the study names."""
        from emg_lens.studies.ablation import plots

        figs = {}
        for i, metric in enumerate(self.spec.metrics):
            result, suffix = self.of_metric(metric), "" if i == 0 else f"_{metric}"
            figs[f"boxplots{suffix}"] = plots.boxplots(result)
            # A heatmap needs a layer axis: one layer per condition, or layer sets.
            summary = result.summary
            if summary["layer"].notna().any() or summary["mode"].isin(["explicit", "all"]).any():
                figs[f"heatmap{suffix}"] = plots.delta_heatmap(result)
        if len(self.summary) and "class_correct" in self.per_subject.columns:
            figs["class_deltas"] = plots.class_deltas(self.of_metric())
        return figs

    def tables(self) -> dict[str, pd.DataFrame]:
        """per_subject.csv, per_class.csv, summary.csv, chance.csv (each subject's unmasked
        accuracy beside chance), claims.csv when the study declares claims, and erasure.csv
        and side_effects.csv when it erases a concept."""
        chance = self.chance()
        tables = {
            # the per-trial lists stay in the cells: per_class.csv carries what they give
            "per_subject.csv": self.per_subject.drop(
                columns=list(TRIAL_WINDOW_FIELDS), errors="ignore"
            ),
            "per_class.csv": self.per_class(),
            "summary.csv": self.summary,
            **({} if chance is None else {"chance.csv": chance}),
        }
        if self.spec.claims:
            tables["claims.csv"] = self.claims()
        erasures = self.erasures()
        if erasures is not None:  # only studies that erase have these
            tables["erasure.csv"] = erasures
            tables["side_effects.csv"] = self.side_effects()
        return tables

    def console(self) -> str:
        """The cells reused and computed, the baseline, each metric's table, the power note,
        the claims and the `legend`: what ``emg-lens study run`` prints."""
        spec = self.spec
        stale = f" ({self.stale} of other provenance)" if self.stale else ""
        lines = [
            f"cells: {self.reused} reused, {self.recomputed} recomputed{stale}",
            *self._forms_lines(),
            f"{spec.name}: baseline {spec.metric} {self.baseline.mean():.3f} over "
            f"{len(self.baseline)} subjects ({spec.stats.test}, {correction_phrase(spec.stats)})",
        ]
        chance = self.chance()
        if chance is not None:
            lines.append(chance_console(chance, below_baseline=below_baseline))
        for metric in spec.metrics:  # one table per metric, from the same forward passes
            if len(spec.metrics) > 1:
                lines.append(f"{metric} ({delta_name(metric)}):")
            lines.append(self.table3(metric).to_string(index=False))
        lines.append(self.power_note())
        erasures = self.erasures()
        if erasures is not None:
            first = erasures[erasures["metric"] == spec.metric]
            lines.append(f"erasures beside their placebos ({spec.metric}; side effects: classes "
                         "outside the concept):")  # fmt: skip
            columns = ["intervention", "mode", "layer", "erasure_delta", "placebo_delta", "p",
                       "concept_delta", "side_effect", "rank", "full_rank"]  # fmt: skip
            lines.append(first[columns].round(3).to_string(index=False))
        if self.spec.claims:
            lines.append(self.claims_note())
        lines.append(legend())
        return "\n".join(lines)

    def _forms_lines(self) -> list[str]:
        """One line per form the subjects computed here ran their conditions in, and why."""
        by_form: dict[tuple[str, str], list[int]] = {}
        for subject, record in self.condition_forms.items():
            by_form.setdefault((record["form"], record["reason"]), []).append(subject)
        lines = []
        for (form, reason), subjects in by_form.items():
            how = "stacked on the batch axis" if form == "stacked" else "broadcast over the batch"
            timed = {
                k.removeprefix("s_per_condition_"): v
                for k, v in self.condition_forms[subjects[0]].items()
                if k.startswith("s_per_condition_")
            }
            timing = ", ".join(f"{k} {v * 1e3:.3g} ms" for k, v in timed.items())
            timing = f"; per condition: {timing}" if timing else ""
            names = ("subject " if len(subjects) == 1 else "subjects ") + ", ".join(
                map(str, subjects)
            )
            lines.append(f"conditions {how} ({names}): {reason}{timing}")
        return lines


def _rows_of(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The rows of one metric, renumbered."""
    return table[table["metric"] == metric].reset_index(drop=True)


def _delta_text(metric: str) -> Callable[[float], str]:
    """How a cell prints the change of ``metric``: ``+1.2%`` or ``+0.0123``."""
    if delta_name(metric) == "Δ%":
        return lambda d: f"{d:+.1f}%"
    return lambda d: f"{d:+.3g}"


def _over(base: Any) -> str:
    """``mean ± SD over 8 subjects``: what a baseline's ``±`` holds."""
    return f"mean ± SD over {len(base)} subject{'s' if len(base) != 1 else ''}"
