"""What the inspection figures share: the palette and the numbers written into heatmap cells
(white on dark cells)."""

from __future__ import annotations

import numpy as np

CLS_COLOR = "0.55"


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
