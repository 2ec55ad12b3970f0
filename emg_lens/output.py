"""`StudyOutput`: what every study kind's result is, and saving it, written once.

A result holds its ``spec`` and ``summary`` table and says which tables, ``summary.md``,
figures and console lines it has; `StudyOutput.save` writes them the same way for every kind,
with one ``report.html`` of the folder (`emg_lens.report`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emg_lens._io import make_folder, write_if_changed
from emg_lens.report import write_manifest, write_report
from emg_lens.stats.compare import format_p

P_COLUMNS = ("p", "p_corr", "p_corrected")
"""Columns that hold p-values: a table prints them by `emg_lens.stats.compare.format_p`."""


_BLOCK_START = re.compile(r"^(#|\||>|[-*+]\s|\d+[.)]\s)")


def one_line(text: object) -> str:
    r"""``text`` as Markdown text, to show as written: its lines and runs of whitespace joined
    by single spaces (a study file's name in a heading, whose line breaks would otherwise start
    blocks of their own) and ``&``, ``<`` and ``>`` escaped, so no text of a study file (names,
    descriptions, claims, labels, class names) is read as HTML: a ``<!--`` would hide the rest
    of summary.md on GitHub. Every text of a study file that summary.md holds passes here
    (`prose`, `markdown_table`'s cells); `emg_lens.report.markdown` reads it back.

    >>> one_line("table 3\n# not a heading")
    'table 3 # not a heading'
    >>> one_line("All fine. <!-- hidden & gone")
    'All fine. &lt;!-- hidden &amp; gone'
    """
    text = " ".join(str(text).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def prose(text: str, label: str = "Description") -> str:
    r"""Free text of a study file (its description) as one line of Markdown: its lines joined,
    and ``label: `` before it where it would start a heading, a table row, a quote or a list,
    so a page never shows a study file's text as a heading or a table of results.

    >>> prose("Cuts per layer\n(IsoNet Table 3)")
    'Cuts per layer (IsoNet Table 3)'
    >>> prose("| p_corr | 0.0001 **** |\n# Forged")
    'Description: | p_corr | 0.0001 **** | # Forged'
    """
    line = one_line(text)
    return f"{label}: {line}" if _BLOCK_START.match(line) else line


def markdown_table(df: pd.DataFrame, floatfmt: str = ".3f") -> str:
    r"""A GitHub-flavoured markdown table (no extra dependency); its text is `one_line`'s (a
    label's ``<`` is ``&lt;``) and a ``|`` (an edge expression's union) is written ``\|``; a
    p-value column (`P_COLUMNS`) is printed by `emg_lens.stats.compare.format_p`, never as 0.

    >>> print(markdown_table(pd.DataFrame({"a": [0.5], "b <i>": ["x | y"], "p": [2e-5]})))
    | a | b &lt;i&gt; | p |
    |---|---|---|
    | 0.500 | x \| y | 2e-05 |
    """

    def fmt(v, column):
        if isinstance(v, float | np.floating):
            if np.isnan(v):
                return ""
            return format_p(v) if column in P_COLUMNS else format(v, floatfmt)
        if v is None or v is pd.NA:
            return ""
        return cell(v)

    def cell(v) -> str:
        return one_line(v).replace("|", "\\|")  # one row per row

    lines = [
        "| " + " | ".join(map(cell, df.columns)) + " |",
        "|" + "|".join("---" for _ in df.columns) + "|",
    ]
    lines += [
        "| " + " | ".join(fmt(v, c) for v, c in zip(row, df.columns)) + " |"
        for row in df.itertuples(index=False)
    ]
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
        """Write the result into ``out_dir`` with `save_outputs`; the paths."""
        kind = getattr(self.spec, "KIND", None) or "ablation"
        return save_outputs(
            out_dir,
            self.tables(),
            self.to_markdown(),
            self.figures,
            kind=f"{kind} study",
            title=self.spec.name,
            spec=self.spec.to_dict(),
        )


def save_outputs(
    out_dir: str | Path,
    tables: dict[str, pd.DataFrame],
    markdown: str,
    figures: Callable[[], dict[str, Any]],
    *,
    kind: str,
    title: str,
    spec: dict[str, Any] | None = None,
) -> list[Path]:
    """Write each table as CSV and ``markdown`` as summary.md, every figure ``figures()``
    draws as PNG and SVG, then ``outputs.json`` and ``report.html``; returns the paths. A file
    that already holds the same bytes is not written again (read-only media included); a full
    disk or a read-only folder is a `emg_lens.errors.StorageError` naming the file.

    >>> import tempfile
    >>> out = Path(tempfile.mkdtemp())
    >>> paths = save_outputs(out, {"summary.csv": pd.DataFrame({"a": [1]})}, "# t", dict,
    ...                      kind="test", title="t")
    >>> [p.name for p in paths]
    ['summary.csv', 'summary.md', 'outputs.json', 'report.html']
    """
    from emg_lens.plotting import save_figures  # matplotlib only when drawing

    out = make_folder(out_dir)
    written = []
    for name, df in tables.items():
        write_if_changed(out / name, df.to_csv(index=False))
        written.append(out / name)
    write_if_changed(out / "summary.md", markdown)
    written.append(out / "summary.md")
    drawn = figures()
    written += save_figures(drawn, out)
    written.append(
        write_manifest(
            out, kind=kind, title=title, spec=spec, tables=list(tables), figures=list(drawn)
        )
    )
    return [*written, write_report(out)]
