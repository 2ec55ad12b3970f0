"""What a regression study gives (`emg_lens.studies.regression`): the cuts' table, each
held-out block's error under each condition, the baselines, the design in words and the
``cuts`` figure."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from emg_lens.output import StudyOutput, markdown_table, one_line, prose
from emg_lens.stats.compare import EXACT_MAX_N, format_p
from emg_lens.stats.design import corrected_floor
from emg_lens.studies.regression.spec import RegressionSpec


@dataclass
class RegressionStudyResult(StudyOutput):
    """The tables of a regression study (`emg_lens.output.StudyOutput`): ``summary``
    (one row per cut, the first the unmasked model), ``blocks`` (each held-out block's MSE per
    condition) and ``baselines`` (the mean predictor, the RMS ridge and the model)."""

    spec: RegressionSpec
    summary: pd.DataFrame
    blocks: pd.DataFrame
    baselines: pd.DataFrame
    n_windows: int
    block_seconds: float
    reused: int = 0
    recomputed: int = 0

    @property
    def n_blocks(self) -> int:
        return int(self.blocks["block"].nunique())

    def design(self) -> str:
        """What the tests count and the smallest p they can give."""
        n, m = self.n_blocks, int(self.summary["p"].notna().sum())
        exact = n <= EXACT_MAX_N
        floor = 2 / 2**n if exact else float("nan")
        correction = self.spec.stats["correction"]
        corrected = corrected_floor(n, m, "permutation", correction) if exact else floor
        test = "exact" if exact else "Monte Carlo"
        return (
            f"The independent unit is the held-out block: {n} blocks of "
            f"{self.block_seconds:g} s ({self.n_windows} overlapping test windows, not "
            "independent). ΔMSE is the mean over blocks of each block's MSE change; its 95 % "
            "intervals are a percentile bootstrap over blocks (`ci_low`, `ci_high`) and a t "
            "interval, Student's spanned with its skew correction (`t_low`, `t_high`). p: the "
            f"{test} two-sided sign-flip test of the blocks' paired changes"
            + (f" (smallest possible {format_p(floor)})" if exact else "")
            + f", corrected ({correction}) over the {m} cuts that cut an "
            f"edge (smallest possible {format_p(corrected)})."
        )

    def baseline_note(self) -> str:
        """A line when the model is below the RMS ridge regression (empty otherwise)."""
        r2 = self.baselines.set_index("predictor")["r2"]
        if r2["TinyMyo"] >= r2["RMS ridge"]:
            return ""
        return (
            f"The model (R² {r2['TinyMyo']:.3f}) is below a ridge regression on each channel's "
            f"RMS (R² {r2['RMS ridge']:.3f}): a linear read of the channels' amplitudes does "
            "better on these blocks."
        )

    def _shown(self) -> pd.DataFrame:
        shown = self.summary.drop(columns="edges").copy()
        for column in ("p", "p_corrected"):
            shown[column] = shown[column].map(format_p)
        return shown

    def to_markdown(self) -> str:
        note = self.baseline_note()
        edges = "\n".join(f"- {one_line(n)}: `{edges}`" for n, edges in self.spec.cuts.items())
        return (
            f"# Regression study {one_line(self.spec.name)}\n\n"
            + (f"{prose(self.spec.description)}\n\n" if self.spec.description else "")
            + f"{one_line(self.spec.target)} from {one_line(self.spec.recording)}; every cut "
            "in every layer.\n\n"
            + self.design()
            + "\n\n## Baselines (held-out windows)\n\n"
            + markdown_table(self.baselines)
            + ("\n\n" + note if note else "")
            + "\n\n## Cuts\n\n"
            + markdown_table(self._shown())
            + "\n\n"
            + edges
            + "\n"
        )

    def tables(self) -> dict[str, pd.DataFrame]:
        """summary.csv, blocks.csv and baselines.csv."""
        return {
            "summary.csv": self.summary,
            "blocks.csv": self.blocks,
            "baselines.csv": self.baselines,
        }

    def figures(self) -> dict[str, plt.Figure]:
        """``cuts``: each cut's ΔMSE with its bootstrap and t intervals."""
        rows = self.summary.iloc[1:]
        fig, ax = plt.subplots(figsize=(6.4, 0.5 + 0.6 * len(rows)))
        y = np.arange(len(rows))[::-1]
        ax.axvline(0.0, color="0.6", lw=1)
        ax.hlines(y + 0.12, rows["ci_low"], rows["ci_high"], color="C0", lw=2, label="bootstrap")
        ax.hlines(y - 0.12, rows["t_low"], rows["t_high"], color="C1", lw=2, label="t")
        ax.plot(rows["delta_mse"], y, "ko")
        method = self.spec.stats["correction"]
        labels = [f"{c}  ({method} p {format_p(p) if np.isfinite(p) else '≡0'})"
                  for c, p in zip(rows["condition"], rows["p_corrected"])]  # fmt: skip
        ax.set_yticks(y, labels)
        ax.set_xlabel(f"ΔMSE over {self.n_blocks} held-out blocks (95 % intervals)")
        ax.set_title(f"{self.spec.name}: edges cut in every layer")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
        fig.tight_layout()
        return {"cuts": fig}

    def console(self) -> str:
        """summary.md and the cells reused and computed."""
        return f"{self.to_markdown()}\ncells: {self.reused} reused, {self.recomputed} recomputed"
