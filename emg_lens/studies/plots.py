"""The marks every study's figures draw: `draw_box` (the ablation study's boxplots and the
training study's figure) and `draw_bar` (the ablation study's per-class changes).
"""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from jaxtyping import Float
from matplotlib.typing import ColorType

from emg_lens.errors import ArgumentError

COLORS = tuple(matplotlib.color_sequences["tab10"])
BOX_ALPHA = 0.55


def draw_box(
    ax: plt.Axes,
    values: Float[np.ndarray, " n"],
    group: int,
    slot: int,
    n_slots: int,
    *,
    jitter: np.random.Generator | None = None,
) -> float:
    """Draw box ``slot`` of ``n_slots`` side by side around x = ``group``, in the slot's colour,
    and return its x (for a significance mark above it). With a ``jitter`` generator every
    value is also drawn as a dot, scattered sideways, instead of the outliers.

    >>> fig, ax = plt.subplots()
    >>> draw_box(ax, np.array([0.8, 0.9, 0.85]), 1, 0, 2)
    0.8
    >>> draw_box(ax, np.array([0.6, 0.7]), 1, 1, 2, jitter=np.random.default_rng(0))
    1.2
    >>> len(ax.collections)  # the dots of the second box
    1
    >>> plt.close(fig)
    """
    x, width, color = _slot(group, slot, n_slots)
    ax.boxplot(
        values,
        positions=[x],
        widths=width * 0.85,
        patch_artist=True,
        boxprops={"facecolor": color, "alpha": BOX_ALPHA},
        medianprops={"color": "black"},
        flierprops={"markersize": 3},
        showfliers=jitter is None,
    )
    if jitter is not None:
        _subject_dots(ax, x, width, values, color, jitter)
    return x


def draw_bar(
    ax: plt.Axes,
    values: Float[np.ndarray, " n"],
    group: int,
    slot: int,
    n_slots: int,
    *,
    jitter: np.random.Generator,
    label: str | None = None,
) -> float:
    """Draw bar ``slot`` of ``n_slots`` side by side around x = ``group``, in the slot's colour:
    the mean of ``values`` (0 with none), each value a dot scattered sideways by ``jitter``;
    return its x. ``label``: the bar's legend entry.

    >>> fig, ax = plt.subplots()
    >>> draw_bar(ax, np.array([-4.0, -6.0]), 3, 1, 2, jitter=np.random.default_rng(0))
    3.2
    >>> float(ax.patches[0].get_height()), len(ax.collections)
    (-5.0, 1)
    >>> plt.close(fig)
    """
    x, width, color = _slot(group, slot, n_slots)
    mean = values.mean() if len(values) else 0
    ax.bar(x, mean, width * 0.9, color=color, alpha=BOX_ALPHA, label=label)
    _subject_dots(ax, x, width, values, color, jitter)
    return x


def _slot(group: float, slot: int, n_slots: int) -> tuple[float, float, ColorType]:
    """x of slot ``slot`` of ``n_slots`` side-by-side marks around ``group``, their width and
    the slot's colour."""
    if not 0 <= slot < n_slots:
        raise ArgumentError(f"slot must be in 0..n_slots-1 = 0..{n_slots - 1}, got {slot}")
    width = 0.8 / n_slots
    return group + (slot - (n_slots - 1) / 2) * width, width, COLORS[slot % len(COLORS)]


def _subject_dots(ax, x: float, width: float, values, color, jitter) -> None:
    """One dot per subject at ``x``, scattered sideways within the mark's width."""
    ax.scatter(
        x + jitter.uniform(-0.15, 0.15, len(values)) * width,
        values,
        s=8,
        color=color,
        edgecolor="black",
        linewidth=0.3,
        zorder=3,
    )


def legend_patches(n_slots: int) -> list[plt.Rectangle]:
    """Legend handles for the box colours of slots ``0..n_slots-1`` (as `draw_box` fills them).

    >>> len(legend_patches(3))
    3
    """
    return [
        plt.Rectangle((0, 0), 1, 1, color=COLORS[j % len(COLORS)], alpha=BOX_ALPHA)
        for j in range(n_slots)
    ]
