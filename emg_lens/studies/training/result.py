"""What a training study produced: the per-cell table, the summary (each architecture's
inputs against its reference input, with statistics), the Table-1 view and the comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from emg_lens._hints import checked
from emg_lens.output import StudyOutput, markdown_table, one_line
from emg_lens.stats.chance import chance_console, chance_markdown, chance_table
from emg_lens.stats.compare import compare, correct, delta_pct, format_p, stars
from emg_lens.studies.subjects import cell_score
from emg_lens.studies.training.spec import TrainingStudySpec
from emg_lens.train.baseline import below_baseline

CHANCE_FIELDS = (
    *("class_correct", "class_total", "trial_correct", "trial_total", "design_effect"),
    "train_accuracy",
)
"""What a stored cell keeps for the chance check (`emg_lens.stats.chance`): its held-out
window and trial counts and its training accuracy; None in a cell stored before them."""


def subject_means(per_subject: pd.DataFrame) -> pd.DataFrame:
    """Trials averaged per (architecture, input, subject).

    >>> table = pd.DataFrame({"architecture": "IsoNet", "input": "emg", "subject": [1, 1, 2],
    ...                       "trial": [0, 1, 0], "value": [0.5, 0.7, 0.9]})
    >>> subject_means(table)["value"].round(2).tolist()
    [0.6, 0.9]
    """
    keys = ["architecture", "input", "subject"]
    return per_subject.groupby(keys, sort=False, as_index=False)["value"].mean()


def summarize_training(per_subject: pd.DataFrame, spec: TrainingStudySpec) -> pd.DataFrame:
    """One row per architecture × input: mean ± std over subjects (trials averaged per subject
    first), Δ% of the mean vs the reference input's, the spec's test against the reference's
    per-subject values, and p corrected over each architecture's comparisons.

    >>> spec = TrainingStudySpec.from_dict({"name": "t", "data": {"subjects": [1, 2, 3]},
    ...     "architectures": ["IsoNet"], "reference": "both", "inputs": [
    ...         {"name": "both", "modalities": ["emg", "acc"]},
    ...         {"name": "emg", "modalities": ["emg"]}]})
    >>> table = pd.DataFrame({"subject": [1, 2, 3] * 2, "architecture": "IsoNet", "trial": 0,
    ...     "input": ["both"] * 3 + ["emg"] * 3, "value": [0.9, 0.92, 0.94, 0.6, 0.62, 0.64]})
    >>> row = summarize_training(table, spec).iloc[1]
    >>> row.input, round(float(row.delta_pct), 1), float(row.U), round(float(row.p), 2), row.stars
    ('emg', -32.6, 0.0, 0.1, 'ns')
    """
    means = subject_means(per_subject)
    rows: list[dict[str, Any]] = []
    for arch in spec.architectures:
        of_arch = means[means["architecture"] == arch]
        ref = of_arch[of_arch["input"] == spec.reference].set_index("subject")["value"]
        family = []
        for inp in spec.inputs:
            values = of_arch[of_arch["input"] == inp.name].set_index("subject")["value"]
            row: dict[str, Any] = {
                "architecture": arch,
                "input": inp.name,
                "n": len(values),
                "mean": float(values.mean()),
                "std": float(values.std(ddof=1)) if len(values) > 1 else float("nan"),
                "reference": float(ref.mean()),
                "delta_pct": delta_pct(float(values.mean()), float(ref.mean())),
                "U": float("nan"),
                "p": float("nan"),
                "p_corr": float("nan"),  # corrected below, over the architecture's family
            }
            if inp.name != spec.reference:
                aligned = values.reindex(ref.index).to_numpy()
                row["U"], row["p"] = compare(aligned, ref.to_numpy(), spec.stats.test)
                family.append(len(rows))
            rows.append(row)
        corrected = correct([rows[i]["p"] for i in family], spec.stats.correction)
        for i, p_corr in zip(family, corrected):
            rows[i]["p_corr"] = p_corr
    summary = pd.DataFrame(rows)
    is_ref = summary["input"] == spec.reference
    summary["stars"] = np.where(is_ref, "", summary["p_corr"].map(stars))
    return summary


@checked
@dataclass
class TrainingStudyResult(StudyOutput):
    """What a training study produced: the per-cell table and the summary
    (`emg_lens.output.StudyOutput`)."""

    spec: TrainingStudySpec
    per_subject: pd.DataFrame
    summary: pd.DataFrame
    # cells read from the store, and trained here
    reused: int = 0
    recomputed: int = 0
    placement: bool = False  # the data have an electrode placement (the chance warning says)

    @classmethod
    def from_table(cls, spec: TrainingStudySpec, per_subject: pd.DataFrame) -> TrainingStudyResult:
        return cls(spec, per_subject, summarize_training(per_subject, spec))

    @property
    def n_subjects(self) -> int:
        return int(self.per_subject["subject"].nunique())

    def table1(self) -> pd.DataFrame:
        """The paper's Table-1 layout: a row per architecture, a column per input, cells
        ``"mean ± std stars"`` (stars: the corrected test against the reference column)."""

        def cell(r) -> str:
            text = f"{r['mean']:.3f}" + ("" if np.isnan(r["std"]) else f" ± {r['std']:.3f}")
            return f"{text} {r['stars']}".rstrip()

        s = self.summary.assign(cell=self.summary.apply(cell, axis=1))
        wide = s.pivot(index="architecture", columns="input", values="cell")
        inputs = [inp.name for inp in self.spec.inputs]
        wide = wide.reindex(index=list(self.spec.architectures), columns=inputs)
        wide.columns = [f"{c} (ref)" if c == self.spec.reference else c for c in wide.columns]
        wide.index.name = None
        return wide

    def header(self) -> str:
        """One line saying what the table shows."""
        s = self.spec
        return (
            f"{s.name}: test {s.metric}, mean ± std over {self.n_subjects} subjects; "
            f"{s.stats.test} vs {s.reference!r}, {s.stats.correction} over each architecture's "
            f"{len(s.inputs) - 1} comparisons"
        )

    def comparisons(self) -> pd.DataFrame:
        """The summary rows that are tested (every input but the reference)."""
        cols = ["architecture", "input", "n", "mean", "delta_pct", "U", "p", "p_corr", "stars"]
        return self.summary.loc[self.summary["input"] != self.spec.reference, cols]

    def chance(self) -> pd.DataFrame | None:
        """Every trained model's held-out score beside chance, one table per architecture and
        input concatenated (`emg_lens.stats.chance.chance_table`), so each model's midpoint is
        to the best of its own kind; None for cells stored before the check."""
        ps = self.per_subject
        if "class_total" not in ps.columns or ps["class_total"].isna().any():
            return None
        draws = ps["trial"].nunique() > 1
        tables = []
        for (arch, inp), rows in ps.groupby(["architecture", "input"], sort=False):
            scores = {}
            for cell in rows.to_dict("records"):
                name = f"subject {cell['subject']}, {arch}, {inp}" + (
                    f", draw {cell['trial']}" if draws else ""
                )
                train = cell.get("train_accuracy")  # NaN in a cell stored before it was kept
                train = None if train is None or pd.isna(train) else float(train)
                scores[name] = cell_score(cell, train_accuracy=train, placement=self.placement)
            tables.append(chance_table(scores))
        return pd.concat(tables, ignore_index=True)

    def to_markdown(self) -> str:
        table = self.table1().reset_index(names="architecture")
        chance = self.chance()
        return (
            f"# {one_line(self.spec.name)}\n\n"
            + ("" if chance is None else chance_markdown(chance) + "\n")
            + f"{one_line(self.header())}.\n\n{markdown_table(table)}\n\n"
            f"{markdown_table(self.summary, floatfmt='.3g')}\n"
        )

    def subject_means(self) -> pd.DataFrame:
        """`subject_means` of ``per_subject``: the values the tests and the figure compare."""
        return subject_means(self.per_subject)

    def figures(self) -> dict:
        """``{"comparison": Figure}``: per-subject values by architecture and input."""
        from emg_lens.studies.training import plots  # matplotlib only when drawing

        return {"comparison": plots.comparison_figure(self)}

    def tables(self) -> dict[str, pd.DataFrame]:
        """per_subject.csv, summary.csv and chance.csv (every model beside chance)."""
        chance = self.chance()
        return {
            "per_subject.csv": self.per_subject,
            "summary.csv": self.summary,
            **({} if chance is None else {"chance.csv": chance}),
        }

    def console(self) -> str:
        """The header, the Table-1 view, the comparisons and every model beside chance (a
        warning per model that is not clearly above it): what ``emg-lens study run``
        prints."""
        shown = self.comparisons()
        shown = shown.assign(**{c: shown[c].map(format_p) for c in ("p", "p_corr")})
        comparisons = shown.to_string(index=False, float_format="{:.3g}".format)
        chance = self.chance()
        return (
            f"{self.header()}\n\n{self.table1().to_string()}\n{comparisons}"
            + (
                ""
                if chance is None
                else f"\n{chance_console(chance, below_baseline=below_baseline)}"
            )
            + f"\ncells: {self.reused} reused, {self.recomputed} recomputed"
        )
