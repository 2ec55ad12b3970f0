"""`StudyResult`: the tidy per-subject table, the summary with statistics, and the figures.

``per_subject`` has one row per (subject, condition): ``subject, intervention, mode, layer,
layers, heads, key, metric, value`` (plus per-class counts). ``summary`` has one row per
condition: ``mean, std, baseline, delta_pct, U, p, p_corr, stars``, corrected over the
family the spec names (the paper's: each layer mode).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from emg_lens.studies.spec import StatsSpec, StudySpec
from emg_lens.studies.stats import compare, correct, delta_pct, stars

__all__ = ["StudyResult", "markdown_table", "summarize"]

CONDITION_COLUMNS = ["intervention", "mode", "layer", "layers", "heads", "key"]


def summarize(per_subject: pd.DataFrame, stats: StatsSpec) -> pd.DataFrame:
    """One row per condition: per-subject values vs the baseline's, tested and corrected.

    >>> table = pd.DataFrame({
    ...     "subject": [1, 2, 3, 1, 2, 3],
    ...     "intervention": ["baseline"] * 3 + ["cross"] * 3,
    ...     "mode": ["none"] * 3 + ["all"] * 3, "layer": [None] * 6, "layers": [""] * 6,
    ...     "heads": ["all"] * 6, "key": ["b"] * 3 + ["c"] * 3,
    ...     "value": [0.9, 0.92, 0.94, 0.6, 0.62, 0.64]})
    >>> row = summarize(table, StatsSpec()).iloc[0]
    >>> round(float(row.delta_pct), 1), float(row.U), round(float(row.p), 2), row.stars
    (-32.6, 0.0, 0.1, 'ns')
    """
    is_base = per_subject["intervention"] == "baseline"
    base = per_subject[is_base].set_index("subject")["value"]
    rows = []
    for _, group in per_subject[~is_base].groupby("key", sort=False):
        masked = group.set_index("subject")["value"].reindex(base.index)
        U, p = compare(masked.to_numpy(), base.to_numpy(), stats.test)
        first = group.iloc[0]
        rows.append(
            {
                **{c: first[c] for c in CONDITION_COLUMNS},
                "n": int(masked.notna().sum()),
                "mean": float(masked.mean()),
                "std": float(masked.std(ddof=1)) if len(masked) > 1 else float("nan"),
                "baseline": float(base.mean()),
                "delta_pct": delta_pct(float(masked.mean()), float(base.mean())),
                "U": U,
                "p": p,
            }
        )
    summary = pd.DataFrame(
        rows, columns=[*CONDITION_COLUMNS, "n", "mean", "std", "baseline", "delta_pct", "U", "p"]
    )
    summary["layer"] = summary["layer"].astype("Int64")
    family = {"mode": "mode", "intervention": "intervention", "all": None}[stats.family]
    if family is None:
        summary["p_corr"] = correct(summary["p"].tolist(), stats.correction)
    else:
        summary["p_corr"] = np.nan
        for _, idx in summary.groupby(family, sort=False).groups.items():
            summary.loc[idx, "p_corr"] = correct(summary.loc[idx, "p"].tolist(), stats.correction)
    summary["stars"] = summary["p_corr"].map(stars)
    return summary


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""

    def fmt(v):
        if isinstance(v, float | np.floating):
            return "" if np.isnan(v) else format(v, floatfmt)
        return "" if v is None or v is pd.NA else str(v)

    lines = [
        "| " + " | ".join(map(str, df.columns)) + " |",
        "|" + "|".join("---" for _ in df.columns) + "|",
    ]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


@dataclass
class StudyResult:
    """What a study produced. `figures` draws; `save` writes everything to a folder."""

    spec: StudySpec
    per_subject: pd.DataFrame
    summary: pd.DataFrame

    @classmethod
    def from_table(cls, spec: StudySpec, per_subject: pd.DataFrame) -> StudyResult:
        per_subject = per_subject.copy()
        per_subject["layer"] = per_subject["layer"].astype("Int64")
        return cls(spec, per_subject, summarize(per_subject, spec.stats))

    @property
    def baseline(self) -> pd.Series:
        """Per-subject baseline metric."""
        base = self.per_subject[self.per_subject["intervention"] == "baseline"]
        return base.set_index("subject")["value"]

    def table3(self) -> pd.DataFrame:
        """The paper's Table-3 layout: one row per (mode, layer), one column per intervention,
        cells ``"Δ% stars"``."""
        s = self.summary
        layer = s["layer"].map(lambda v: "" if pd.isna(v) else str(int(v)))
        cell = s["delta_pct"].map(lambda d: f"{d:+.1f}%") + " " + s["stars"]
        wide = s.assign(layer=layer, cell=cell).pivot_table(
            index=["mode", "layer", "heads"],
            columns="intervention",
            values="cell",
            aggfunc="first",
            sort=False,
        )
        wide.columns.name = None
        return wide.reset_index()

    def class_accuracy(self, classes: dict[str, list[int]] | None = None) -> pd.DataFrame:
        """Per-subject accuracy restricted to groups of class indices (e.g. the synthetic
        data's ``{"interaction": [8, 9, 10, 11]}``); all classes when ``classes`` is None."""
        rows = []
        for r in self.per_subject.itertuples(index=False):
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

    def to_markdown(self) -> str:
        base = self.baseline
        head = (
            f"# {self.spec.name}\n\nBaseline {self.spec.metric}: {base.mean():.3f} "
            f"± {base.std(ddof=1) if len(base) > 1 else 0:.3f} over {len(base)} subjects; "
            f"{self.spec.stats.test}, {self.spec.stats.correction} over each "
            f"{self.spec.stats.family}.\n"
        )
        cols = [
            "intervention",
            "mode",
            "layer",
            "heads",
            "n",
            "mean",
            "delta_pct",
            "U",
            "p",
            "p_corr",
            "stars",
        ]
        return head + "\n" + markdown_table(self.summary[cols]) + "\n"

    def figures(self) -> dict:
        """Matplotlib figures by name: ``boxplots`` (the paper's Figure 5) and ``heatmap``."""
        from emg_lens.studies import plots

        figs = {"boxplots": plots.boxplots(self)}
        if self.summary["layer"].notna().any():
            figs["heatmap"] = plots.delta_heatmap(self)
        return figs

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write per_subject.csv, summary.csv, summary.md and every figure as PNG and SVG."""
        from emg_lens.plotting import save_figures  # matplotlib only when drawing

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "per_subject.csv", out / "summary.csv", out / "summary.md"]
        self.per_subject.to_csv(written[0], index=False)
        self.summary.to_csv(written[1], index=False)
        written[2].write_text(self.to_markdown())
        return written + save_figures(self.figures(), out)
