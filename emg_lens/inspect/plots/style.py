"""What the inspection figures share: the palette, the check that a table has the columns a
figure reads, and the numbers written into heatmap cells (white on dark cells)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from emg_lens.errors import ArgumentError

CLS_COLOR = "0.55"


def require_columns(table: pd.DataFrame, columns: list[str], what: str) -> None:
    """An `ArgumentError` naming ``what`` unless ``table`` has rows and every one of
    ``columns``.

    >>> require_columns(pd.DataFrame({"layer": [0]}), ["layer", "head"], "plot_x")
    Traceback (most recent call last):
    ...
    emg_lens.errors.ArgumentError: plot_x needs a non-empty table with columns ['layer', 'head'] (as returned by the matching emg_lens.inspect function); missing ['head']
    """  # noqa: E501
    missing = [c for c in columns if c not in getattr(table, "columns", [])]
    if missing or len(table) == 0:
        raise ArgumentError(
            f"{what} needs a non-empty table with columns {columns} (as returned by the "
            f"matching emg_lens.inspect function); missing {missing or 'rows'}"
        )


def annotate_cells(ax, text: list[list[str]], white: np.ndarray, fontsize: int = 7) -> None:
    """Write ``text`` into the cells of a heatmap, in white where the cell is dark.

    >>> import matplotlib.pyplot as plt
    >>> fig, ax = plt.subplots()
    >>> annotate_cells(ax, [["a", "b"]], np.array([[True, False]]))
    >>> [(t.get_text(), t.get_color()) for t in ax.texts]
    [('a', 'white'), ('b', 'black')]
    >>> plt.close(fig)
    """
    for i, row in enumerate(text):
        for j, cell in enumerate(row):
            color = "white" if white[i, j] else "black"
            ax.text(j, i, cell, ha="center", va="center", fontsize=fontsize, color=color)


def dark_cells(grid: np.ndarray, lim: float) -> np.ndarray:
    """Cells of a diverging map (``-lim..lim``) dark enough for white text.

    >>> dark_cells(np.array([[-1.0, 0.2, np.nan]]), 1.0).tolist()
    [[True, False, False]]
    """
    return np.nan_to_num(np.abs(grid)) > 0.6 * lim
