"""Figures on the body: a value per channel drawn on the electrode geometry, the edges between
channels or groups as a circle (chord) plot, and a channel x channel matrix ordered by group
with the modality bands marked.

Every figure has one colour bar (symmetric about 0 for a signed quantity), its units, and the
number of subjects in the title for a mean over subjects; electrodes are drawn, never
interpolated between (docs/concepts.md, "Electrode placements", says why).

>>> from emg_lens.geometry import Montage, ring
>>> fig = plot_channel_values({"emg": [1.0, 2, 3, 4]}, {"emg": Montage((ring("band", 4),))},
...                           title="attention received", units="share", n_subjects=3)
>>> fig.axes[0].collections[0].get_offsets().shape, [float(v) for v in fig.axes[-1].get_ylim()]
((4, 2), [1.0, 4.0])
>>> plt.close(fig)
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import BoundaryNorm, Colormap, ListedColormap, Normalize
from matplotlib.patches import Circle, FancyArrowPatch, Patch, Polygon, Rectangle
from matplotlib.path import Path as MplPath

from emg_lens.errors import ArgumentError, checked
from emg_lens.geometry.montage import Montage, Part

GROUP_COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3")
"""One colour per token group, in layout order (CLS first when present)."""


def _title(title: str, n_subjects: int | None) -> str:
    if n_subjects is None:
        return title
    return f"{title} (mean over {n_subjects} subject{'s' if n_subjects != 1 else ''})"


def _norm(values: Sequence[np.ndarray], symmetric: bool) -> Normalize:
    """Limits spanning every finite value (symmetric about 0 when asked); a constant gets a
    small span so that it still has a colour."""
    finite = np.concatenate([np.ravel(v)[np.isfinite(np.ravel(v))] for v in values] or [[]])
    if not len(finite):
        raise ArgumentError("no finite value to draw: every value is NaN or inf")
    lo, hi = float(finite.min()), float(finite.max())
    if symmetric:
        top = max(abs(lo), abs(hi)) or 1.0
        return Normalize(-top, top)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return Normalize(lo, hi)


def electrode_values(values: Sequence[float] | np.ndarray, montage: Montage) -> np.ndarray:
    """A value per electrode: the mean of its channels' (its axes); NaN where all are NaN.

    >>> from emg_lens.geometry import ring
    >>> electrode_values([1.0, 3.0, 5.0, 7.0], Montage((ring("r", 2),), axes=2)).tolist()
    [2.0, 6.0]
    """
    values = np.asarray(values, dtype=float)
    if values.shape != (montage.n_channels,):
        raise ArgumentError(
            f"{len(values)} values for {montage.n_channels} channels: one per channel"
        )
    grouped = values.reshape(montage.n_electrodes, montage.axes)
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(grouped).sum(axis=1)
        sums = np.where(np.isfinite(grouped), grouped, 0.0).sum(axis=1)
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _outline(ax: plt.Axes, part: Part) -> None:
    """What a part is drawn on: the limb's cross-section, the head, the unrolled forearm."""
    if part.kind == "ring":
        radius = max(math.hypot(x, y) for x, y in part.xy)
        ax.add_patch(Circle((0, 0), radius * 1.12, fill=False, color="0.6", lw=1))
        for text, (x, y) in (
            ("dorsal", (0, 1.3)),
            ("volar", (0, -1.3)),
            ("radial", (1.3, 0)),
            ("ulnar", (-1.3, 0)),
        ):
            ax.text(x * radius, y * radius, text, ha="center", va="center", fontsize=7, c="0.4")
        ax.set_xlim(-1.55 * radius, 1.55 * radius)
        ax.set_ylim(-1.55 * radius, 1.55 * radius)
    elif part.kind == "scalp":
        ax.add_patch(Circle((0, 0), 1.0, fill=False, color="0.4", lw=1))
        ax.add_patch(Polygon([(-0.1, 0.995), (0, 1.12), (0.1, 0.995)], fill=False, color="0.4"))
        for side in (-1, 1):
            ax.add_patch(Circle((side * 1.04, 0), 0.06, fill=False, color="0.4", lw=1))
        ax.set_xlim(-1.2, 1.2)
        ax.set_ylim(-1.15, 1.2)
    elif part.kind == "points":
        xs, ys = zip(*part.xy)
        ax.axhline(0, color="0.8", lw=0.8, zorder=0)
        ax.text(1.0, 0.0, " elbow\n crease", transform=ax.get_yaxis_transform(), ha="left",
                va="center", fontsize=6.5, color="0.5")  # fmt: skip
        ax.set_xlabel("mm around the forearm from the dorsal midline", fontsize=8)
        ax.set_ylabel("mm along the arm, distal +", fontsize=8)
        pad = 25.0
        ax.set_xlim(min(xs) - pad, max(xs) + pad)
        ax.set_ylim(max(ys) + pad, min(ys) - pad)  # distal down, as the arm hangs


def _draw_part(
    ax: plt.Axes, part: Part, values: np.ndarray, norm: Normalize, cmap: str | Colormap
) -> None:
    """``values[k]`` (electrode ``part.electrodes[k]``'s) drawn in ``part``'s frame (to scale but
    for points)."""
    if part.shape is not None and part.cells is not None:  # a grid (Part.__post_init__)
        rows, cols = part.shape
        image = np.full((rows, cols), np.nan)
        for (r, c), value in zip(part.cells, values):
            image[r, c] = value
        pitch = (part.xy[1][0] - part.xy[0][0]) or (part.xy[1][1] - part.xy[0][1])
        pitch = abs(pitch) or 1.0
        x_edges = (np.arange(cols + 1) - 0.5) * pitch
        y_edges = (np.arange(rows + 1) - 0.5) * pitch
        ax.pcolormesh(
            x_edges, y_edges, np.ma.masked_invalid(image), cmap=cmap, norm=norm, gid=part.name
        )
        ax.set_ylim(y_edges[-1], y_edges[0])  # row 0 at the top, as the grid is laid out
        ax.set_xlabel("mm", fontsize=8)
        ax.set_aspect("equal")
        return
    _outline(ax, part)
    xs, ys = zip(*part.xy)
    ax.scatter(
        xs, ys, c=values, cmap=cmap, norm=norm, s=160 if part.kind != "scalp" else 110,
        edgecolors="0.2", linewidths=0.6, zorder=3, gid=part.name,
    )  # fmt: skip
    names = part.labels or [str(e + 1) for e in part.electrodes]  # 1-based, as files count
    for (x, y), name in zip(part.xy, names):
        if part.kind == "points":  # below the dot: muscle names are longer than a dot
            ax.annotate(name, (x, y), xytext=(0, -11), textcoords="offset points",
                        ha="center", va="center", fontsize=6.5, zorder=4)  # fmt: skip
        else:
            ax.text(x, y, name, ha="center", va="center", fontsize=6, zorder=4)
    if part.kind != "points":
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_aspect("equal")


@checked
def plot_channel_values(
    values: Mapping[str, Sequence[float] | np.ndarray],
    montages: Mapping[str, Montage],
    *,
    title: str,
    units: str,
    n_subjects: int | None = None,
    symmetric: bool = False,
    cmap: str | None = None,
) -> plt.Figure:
    """A value per channel, for each modality of ``values``, drawn on its montage (one panel
    per part: rings, grids, points, scalp; see `emg_lens.geometry.montage`); channels of one
    electrode (accelerometer axes) are averaged. One colour bar for all panels spans the
    values (symmetric about 0 for a signed quantity), labelled with ``units``; a modality
    without a montage is refused (draw it as a matrix instead).

    Each electrode is drawn at its part's ``xy`` (a ``scatter`` whose offsets are those
    positions, in ``part.electrodes`` order) or, in a grid, in its cell (a ``pcolormesh``)."""
    if missing := [m for m in values if m not in montages]:
        raise ArgumentError(
            f"no electrode placement for {missing}; placed: {sorted(montages)} (a dataset's "
            "registry entry or 10-20 channel names give one)"
        )
    per_electrode = {m: electrode_values(v, montages[m]) for m, v in values.items()}
    norm = _norm(list(per_electrode.values()), symmetric)
    cmap = cmap or ("RdBu_r" if symmetric else "viridis")
    panels = [(m, part) for m in values for part in montages[m].parts]
    widths = [4.4 if part.kind == "points" else 3.3 for _, part in panels]
    fig, axes = plt.subplots(
        1, len(panels), figsize=(sum(widths) + 1.4, 4.0), squeeze=False,
        width_ratios=widths, layout="constrained",
    )  # fmt: skip
    for ax, (modality, part) in zip(axes[0], panels):
        montage = montages[modality]
        chosen = per_electrode[modality][list(part.electrodes)]
        _draw_part(ax, part, chosen, norm, cmap)
        axes_note = f" ({montage.axes} axes averaged)" if montage.axes > 1 else ""
        ax.set_title(f"{modality}: {part.name}{axes_note}", fontsize=9)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]), label=units)
    fig.suptitle(_title(title, n_subjects), fontsize=10)
    return fig


@checked
def plot_channel_value_rows(
    rows: Mapping[str, Mapping[str, Sequence[float] | np.ndarray]],
    montage: Montage,
    *,
    title: str,
    units: Mapping[str, str],
    symmetric: Collection[str] = (),
) -> plt.Figure:
    """A table of panels on a one-part ``montage`` (a ring, a grid): ``rows[row][column]`` is
    a value per channel; every row has the same columns and its own colour bar, labelled
    ``units[row]`` (a row is one quantity, e.g. a signal's share per electrode, compared
    across conditions in its columns), symmetric about 0 for the rows named in
    ``symmetric`` (signed quantities, such as an effect).

    >>> from emg_lens.geometry import ring
    >>> fig = plot_channel_value_rows(
    ...     {"signal": {"a": [1.0, 2, 3, 4], "b": [4.0, 3, 2, 1]}, "effect": {"a": [0.0] * 4,
    ...      "b": [1.0, -1, 0, 0]}}, Montage((ring("band", 4),)), title="t",
    ...     units={"signal": "share", "effect": "logits"}, symmetric={"effect"})
    >>> len(fig.axes)  # 4 panels and 2 colour bars
    6
    >>> plt.close(fig)
    """
    if len(montage.parts) != 1:
        raise ArgumentError(f"rows are drawn on a one-part montage, got {len(montage.parts)} parts")
    columns = [list(cols) for cols in rows.values()]
    if not rows or not columns[0] or any(c != columns[0] for c in columns):
        raise ArgumentError(f"every row needs the same columns, got {columns}")
    if missing := [r for r in rows if r not in units]:
        raise ArgumentError(f"units names no unit for rows {missing}")
    part = montage.parts[0]
    fig, axes = plt.subplots(
        len(rows), len(columns[0]), figsize=(2.3 * len(columns[0]) + 1.2, 2.4 * len(rows)),
        squeeze=False, layout="constrained",
    )  # fmt: skip
    for row_axes, (row, values) in zip(axes, rows.items()):
        per_electrode = [electrode_values(v, montage) for v in values.values()]
        norm = _norm(per_electrode, row in symmetric)
        cmap = "RdBu_r" if row in symmetric else "viridis"
        for ax, column, chosen in zip(row_axes, values, per_electrode):
            _draw_part(ax, part, chosen[list(part.electrodes)], norm, cmap)
            ax.set_title(column, fontsize=8)
        row_axes[0].set_ylabel(row, fontsize=8)
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(row_axes))
        bar.set_label(units[row], fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_channel_groups(
    panels: Mapping[str, Sequence[int]],
    montage: Montage,
    *,
    groups: Sequence[str],
    title: str,
) -> plt.Figure:
    """One panel per grouping of the channels of ``montage`` (a part each, side by side):
    ``panels[name][k]`` is channel k's index into ``groups``, or -1 for none (left blank),
    each group in its colour of `GROUP_COLORS`, with a legend; the panel is titled ``name``
    (what was cut between the groups and its effect, say).

    >>> from emg_lens.geometry import grid
    >>> fig = plot_channel_groups({"halves": [0, 0, 1, 1]}, Montage((grid("g", 2, 2, 1.0),)),
    ...                           groups=["left", "right"], title="cut")
    >>> len(fig.axes), [t.get_text() for t in fig.legends[0].get_texts()]
    (1, ['left', 'right'])
    >>> plt.close(fig)
    """
    if not panels or not 0 < len(groups) <= len(GROUP_COLORS):
        raise ArgumentError(
            f"need 1+ panels and 1 to {len(GROUP_COLORS)} groups, got {len(panels)}, {len(groups)}"
        )
    cmap = ListedColormap(GROUP_COLORS[: len(groups)])
    norm = BoundaryNorm(np.arange(len(groups) + 1) - 0.5, len(groups))
    parts = [(name, part) for name in panels for part in montage.parts]
    # a tall grid (13 x 5) gets a narrow panel, a ring or a square grid a square one
    widths = [3.3 if p.shape is None else max(1.8, 3.3 * p.shape[1] / p.shape[0]) + 0.8
              for _, p in parts]  # fmt: skip
    fig, axes = plt.subplots(
        1, len(parts), figsize=(max(sum(widths), 4.0), 4.3), squeeze=False,
        width_ratios=widths, layout="constrained",
    )  # fmt: skip
    for ax, (name, part) in zip(axes[0], parts):
        index = np.asarray(panels[name], dtype=float)
        if index.shape != (montage.n_channels,) or not np.isin(index, range(-1, len(groups))).all():
            raise ArgumentError(
                f"panel {name!r}: give each of the {montage.n_channels} channels a group index "
                f"0..{len(groups) - 1} or -1, got {index.tolist()[:8]}..."
            )
        chosen = electrode_values(np.where(index < 0, np.nan, index), montage)
        _draw_part(ax, part, chosen[list(part.electrodes)], norm, cmap)
        ax.set_title(name, fontsize=8)
    handles = [Patch(color=GROUP_COLORS[k], label=g) for k, g in enumerate(groups)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(groups), fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def _group_order(groups: Sequence[str]) -> tuple[list[int], list[str]]:
    """Indices sorted by group (groups in order of first appearance) and the groups."""
    order = list(dict.fromkeys(groups))
    return sorted(range(len(groups)), key=lambda i: order.index(groups[i])), order


def plot_circle(
    weights: np.ndarray,
    labels: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    title: str,
    units: str,
    n_subjects: int | None = None,
    symmetric: bool = False,
    directed: bool = True,
) -> plt.Figure:
    """Edges between nodes (channels or groups) as a circle plot, the EEG convention for
    connectivity: the nodes on a circle, ordered by ``groups`` (one arc of colour per group),
    and a chord for every non-zero, finite ``weights[i, j]`` (from node i, the query, to node
    j, the key, when ``directed``), coloured by its weight on one colour bar. The diagonal
    (a node's edges with itself) is no chord: it is printed beside the node's name.

    >>> fig = plot_circle(np.array([[0, 1.0], [0.5, 0]]), ["emg", "acc"], title="flow",
    ...                   units="mass")
    >>> len(fig.axes[0].patches) - 2, [float(v) for v in fig.axes[-1].get_ylim()]  # 2 arcs
    (2, [0.5, 1.0])
    >>> plt.close(fig)
    """
    weights = np.asarray(weights, dtype=float)
    n = len(labels)
    if weights.shape != (n, n):
        raise ArgumentError(f"weights must be {n} x {n} (one row per label), got {weights.shape}")
    groups = list(groups) if groups is not None else list(labels)
    if len(groups) != n:
        raise ArgumentError(f"groups needs one entry per label ({n}), got {len(groups)}")
    order, group_names = _group_order(groups)
    angle = {node: math.pi / 2 - 2 * math.pi * k / n for k, node in enumerate(order)}
    xy = {node: (math.cos(a), math.sin(a)) for node, a in angle.items()}
    off = ~np.eye(n, dtype=bool) & np.isfinite(weights) & (weights != 0)
    norm = _norm([weights[off]] if off.any() else [np.zeros(1)], symmetric)
    cmap = plt.get_cmap("RdBu_r" if symmetric else "viridis")
    fig, ax = plt.subplots(figsize=(5.4, 5.0))
    for g, name in enumerate(group_names):  # one arc per group, under its nodes
        members = [angle[i] for i in order if groups[i] == name]
        half = math.pi / n
        arc = np.linspace(max(members) + half, min(members) - half, 30)
        ax.add_patch(
            Polygon(np.c_[1.12 * np.cos(arc), 1.12 * np.sin(arc)], closed=False, fill=False,
                    lw=5, color=GROUP_COLORS[g % len(GROUP_COLORS)], label=name)
        )  # fmt: skip
    for i, j in zip(*np.nonzero(off)):
        (x0, y0), (x1, y1) = xy[i], xy[j]
        # through the middle, each direction of a pair bent to its own side
        control = (0.2 * (y1 - y0), -0.2 * (x1 - x0))
        bend = MplPath(
            [(x0, y0), control, (x1, y1)], [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3]
        )
        strength = abs(norm(weights[i, j]) - (0.5 if symmetric else 0.0))
        ax.add_patch(
            FancyArrowPatch(
                path=bend,
                arrowstyle="-|>" if directed else "-",
                mutation_scale=9,
                color=cmap(norm(weights[i, j])),
                lw=0.8 + 3.5 * strength,
                alpha=0.85,
            )
        )
    xs, ys = zip(*(xy[i] for i in range(n)))
    ax.scatter(xs, ys, s=40, color="0.15", zorder=3)
    for i in range(n):
        x, y = xy[i]
        within = weights[i, i]  # a node's edges with itself: no chord, said beside its name
        text = labels[i] if not np.isfinite(within) else f"{labels[i]}\n(within {within:.2g})"
        ax.text(1.24 * x, 1.24 * y, text, ha="center", va="center", fontsize=7)
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.axis("off")
    if directed:
        ax.text(0, -1.42, "arrow: from the query to the key it reads", ha="center",
                fontsize=7, color="0.4")  # fmt: skip
    ax.legend(loc="lower left", fontsize=7, frameon=False, bbox_to_anchor=(-0.08, -0.1))
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8, label=units)
    ax.set_title(_title(title, n_subjects), fontsize=10)
    return fig


def plot_channel_matrix(
    matrix: np.ndarray,
    labels: Sequence[str],
    groups: Sequence[str],
    *,
    title: str,
    units: str,
    n_subjects: int | None = None,
    symmetric: bool = False,
    row_title: str = "query",
    col_title: str = "key",
) -> plt.Figure:
    """A channel x channel matrix with rows and columns ordered by ``groups``, each group's
    band marked in colour along both axes and its boundary drawn, one colour bar.

    >>> fig = plot_channel_matrix(np.eye(3), ["a0", "b0", "a1"], ["a", "b", "a"],
    ...                           title="QK", units="score")
    >>> fig.axes[0].images[0].get_array().tolist()  # ordered: a0, a1, b0
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    >>> plt.close(fig)
    """
    matrix = np.asarray(matrix, dtype=float)
    n = len(labels)
    if matrix.shape != (n, n) or len(groups) != n:
        raise ArgumentError(
            f"matrix must be {n} x {n} with a group per label, got {matrix.shape} and "
            f"{len(groups)} groups"
        )
    order, group_names = _group_order(groups)
    ordered = matrix[np.ix_(order, order)]
    norm = _norm([ordered], symmetric)
    cmap = "RdBu_r" if symmetric else "viridis"
    size = min(9.0, 3.5 + 0.12 * n)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    ax.imshow(ordered, cmap=cmap, norm=norm, interpolation="nearest")
    start = 0
    for g, name in enumerate(group_names):
        count = sum(1 for i in order if groups[i] == name)
        color = GROUP_COLORS[g % len(GROUP_COLORS)]
        for band in (
            Rectangle((start - 0.5, -1.6), count, 0.9, color=color, clip_on=False),
            Rectangle((-1.6, start - 0.5), 0.9, count, color=color, clip_on=False),
        ):
            ax.add_patch(band)
        ax.text(start - 0.5 + count / 2, -2.0, name, ha="center", va="bottom", fontsize=8)
        if start:
            ax.axhline(start - 0.5, color="white", lw=1.2)
            ax.axvline(start - 0.5, color="white", lw=1.2)
        start += count
    ticks = [labels[i] for i in order]
    step = max(1, n // 40)  # at most ~40 tick labels
    ax.set_xticks(range(0, n, step), ticks[::step], rotation=90, fontsize=6)
    ax.set_yticks(range(0, n, step), ticks[::step], fontsize=6)
    ax.set_xlim(-1.7, n - 0.5)
    ax.set_ylim(n - 0.5, -2.6)
    ax.set_xlabel(col_title, fontsize=8)
    ax.set_ylabel(row_title, fontsize=8)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8, label=units)
    ax.set_title(_title(title, n_subjects), fontsize=10, pad=18)
    return fig
