"""Saving figures: every figure emg_lens writes is a PNG (to look at) and an SVG (to edit)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt

from emg_lens.errors import ArgumentError, describe

__all__ = ["FIGURE_FORMATS", "save_figures"]

FIGURE_FORMATS = ("png", "svg")
DPI = 150


def save_figures(figures: Mapping[str, plt.Figure], out_dir: str | Path) -> list[Path]:
    """Write each figure as ``out_dir/<name>.png`` and ``.svg`` (the folder is created), close
    it, and return the paths written, figure by figure.

    >>> import tempfile
    >>> fig, ax = plt.subplots()
    >>> paths = save_figures({"demo": fig}, tempfile.mkdtemp())
    >>> [p.name for p in paths], plt.fignum_exists(fig.number)
    (['demo.png', 'demo.svg'], False)
    """
    if not isinstance(figures, Mapping):
        raise ArgumentError(
            f"save_figures needs a dict of name -> matplotlib Figure, got {describe(figures)}"
        )
    if bad := {name: describe(f) for name, f in figures.items() if not isinstance(f, plt.Figure)}:
        raise ArgumentError(f"save_figures needs matplotlib Figures; these are not: {bad}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, fig in figures.items():
        for ext in FIGURE_FORMATS:
            written.append(out / f"{name}.{ext}")
            fig.savefig(written[-1], dpi=DPI, bbox_inches="tight")
        plt.close(fig)
    return written
