"""`StudyOutput`: what every study kind's result is, and saving it, written once.

A result (`emg_lens.studies.result.StudyResult` of an ablation study,
`emg_lens.studies.training.result.TrainingStudyResult`,
`emg_lens.discovery.study.DiscoveryStudyResult`) holds its ``spec`` and its ``summary``
table, and says which tables it writes (`StudyOutput.tables`), its ``summary.md``
(`StudyOutput.to_markdown`), its figures (`StudyOutput.figures`) and what ``emg-lens study
run`` prints (`StudyOutput.console`); `StudyOutput.save` writes them all the same way for
every kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emg_lens._io import make_folder, write_if_changed

__all__ = ["StudyOutput", "markdown_table"]


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    """A GitHub-flavoured markdown table (no extra dependency).

    >>> print(markdown_table(pd.DataFrame({"a": [0.5], "b": ["x"]})))
    | a | b |
    |---|---|
    | 0.500 | x |
    """

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


class StudyOutput:
    """The interface of a study's result (see the module docstring). A kind's result class
    defines ``spec``, ``summary`` (its summary table), `tables`, `to_markdown`, `figures` and
    `console`; ``reused`` and ``recomputed`` count its cells read from the store and computed
    (0 and 0 where a kind keeps no count)."""

    spec: Any
    summary: pd.DataFrame
    reused: int = 0
    recomputed: int = 0

    def tables(self) -> dict[str, pd.DataFrame]:
        """The CSV files the result writes, by file name."""
        raise NotImplementedError

    def to_markdown(self) -> str:
        """``summary.md``."""
        raise NotImplementedError

    def figures(self) -> dict[str, Any]:
        """Matplotlib figures by name (drawn when called)."""
        raise NotImplementedError

    def console(self) -> str:
        """What ``emg-lens study run`` prints of the result."""
        raise NotImplementedError

    def save(self, out_dir: str | Path) -> list[Path]:
        """Write each table as CSV and summary.md (each atomically), then every figure as PNG
        and SVG; the paths. A file that already holds the same bytes is not written again, so
        saving an unchanged result writes nothing (read-only media included); a full disk or
        a read-only folder is a `emg_lens.errors.StorageError` naming the file."""
        from emg_lens.plotting import save_figures  # matplotlib only when drawing

        out = make_folder(out_dir)
        written = []
        for name, df in self.tables().items():
            write_if_changed(out / name, df.to_csv(index=False))
            written.append(out / name)
        write_if_changed(out / "summary.md", self.to_markdown())
        written.append(out / "summary.md")
        return written + save_figures(self.figures(), out)
