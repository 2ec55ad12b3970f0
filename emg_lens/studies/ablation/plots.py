"""Figures of an ablation study: per-mode boxplots (the paper's Figure 5), a Δ% heatmap, and
the change of each class's accuracy under chosen conditions (`class_deltas`).

Each takes a `StudyResult` and returns a matplotlib Figure (`emg_lens.plotting.save_figures`
writes PNG and SVG); the boxes are drawn as every study's are (`emg_lens.studies.plots`).
"""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from emg_lens.errors import ArgumentError, checked
from emg_lens.stats.metrics import UNITS, delta_column, delta_name
from emg_lens.studies.plots import draw_bar, draw_box, legend_patches

MODE_TITLES = {
    "individual": "individual layer",
    "from_first": "from the first layer to l (RFB)",
    "from_last": "from l to the last layer (RFE)",
    "all": "all layers",
    "explicit": "explicit layer sets",
    "input": "input ablation",
}


def _x_label(row) -> str:
    """A row's x category: its layer, else its layer set, else "input"."""
    return str(int(row.layer)) if not pd.isna(row.layer) else (row.layers or "input")


@checked
def boxplots(result) -> plt.Figure:
    """One panel per mode: per-subject metric per layer, one box per intervention and head set
    side by side (the legend names both), the baseline mean as a dashed line, significance
    stars over each box."""
    ps, summary = result.per_subject, result.summary
    base = result.baseline
    modes = list(dict.fromkeys(summary["mode"]))
    series = list(dict.fromkeys(zip(summary["intervention"], summary["heads"])))
    names = [_series_name(name, heads, series) for name, heads in series]
    # Constrained layout keeps the suptitle above the panels and the legend in a column to
    # their right; centred vertically, the legend stays clear of the title (under tight_layout
    # they overlapped).
    fig, axes = plt.subplots(
        1,
        len(modes),
        figsize=(4.2 * len(modes) + 2.2, 4.0),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    all_values = ps["value"].to_numpy(dtype=float)
    lo, hi = float(np.nanmin(all_values)), float(np.nanmax(all_values))
    span = max(hi - lo, 1e-3)
    star_y = hi + 0.04 * span  # one row of significance marks above every box
    for ax, mode in zip(axes[0], modes):
        rows = summary[summary["mode"] == mode]
        labels = list(dict.fromkeys(_x_label(r) for r in rows.itertuples(index=False)))
        for r in rows.itertuples(index=False):
            values = ps.loc[ps["key"] == r.key, "value"].to_numpy()
            slot = series.index((r.intervention, r.heads))
            x = draw_box(ax, values, labels.index(_x_label(r)), slot, len(series))
            ax.text(x, star_y, r.stars, ha="center", va="bottom", fontsize=7)
        ax.set_ylim(lo - 0.05 * span, hi + 0.14 * span)
        ax.axhline(base.mean(), color="0.3", ls="--", lw=1, label="baseline (mean)")
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel("layer" if mode not in ("input", "explicit", "all") else "")
        ax.set_title(MODE_TITLES.get(mode, mode), fontsize=10, pad=6)
        ax.grid(axis="y", alpha=0.3)
    metric = result.spec.metric
    unit = "" if delta_name(metric) == "Δ%" else f" ({UNITS[metric]})"
    axes[0][0].set_ylabel(f"{metric} per subject{unit}")
    handles = [*legend_patches(len(series)), plt.Line2D([], [], color="0.3", ls="--")]
    fig.legend(handles, [*names, "baseline mean"], loc="outside right center", fontsize=8)
    details = f"{len(base)} subjects, {result.spec.stats.test}, {result.spec.stats.correction}"
    width = int(fig.get_figwidth() * 10)  # characters of an 11-point title that fit
    fig.suptitle(
        "\n".join([*textwrap.wrap(result.spec.name, width), *textwrap.wrap(details, width)]),
        fontsize=11,
    )
    return fig


def _series_name(name: str, heads: str, series: list[tuple[str, str]]) -> str:
    """A box series' legend entry: the intervention, and its head set when the study has
    several."""
    if len({h for _, h in series}) == 1 and heads == "all":
        return name
    return f"{name} · heads {heads}"


def delta_heatmap(result) -> plt.Figure:
    """Mean change (Δ% or Δ) and stars per condition: rows intervention x mode (and head
    subset), columns layer; explicit layer sets and mode ``all`` get panels of their own. One
    colour scale, symmetric about 0 (from 0 for ``kl`` and ``flip_rate``); cells that are not
    significant or cannot move (``≡0``) are hatched, so colour alone never reads as an effect."""
    s = result.summary
    panels = []
    per_layer = s[s["layer"].notna()]
    if len(per_layer):
        columns = [str(v) for v in sorted({int(v) for v in per_layer["layer"]})]
        panels.append(("by layer", "layer", per_layer, columns, per_layer["layer"].map(str)))
    sets_of = {"explicit": ("explicit layer sets", "layer set"), "all": ("all layers", "layers")}
    for mode, (title, axis) in sets_of.items():  # a panel per mode of layer sets
        sets = s[s["mode"] == mode]
        if len(sets):
            panels.append((title, axis, sets, list(dict.fromkeys(sets["layers"])), sets["layers"]))
    if not panels:
        needs = "conditions on one layer (individual, from_first, from_last), explicit or all"
        raise ArgumentError(
            f"delta_heatmap needs {needs}; this study has modes {sorted(set(s['mode']))}"
        )
    metric = result.spec.metric
    cells = [
        _heatmap_cells(rows, columns, labels, metric) for _, _, rows, columns, labels in panels
    ]
    # the smallest scale: ±1 % for a relative change, and a change of 1e-6 for an absolute one
    floor = 1.0 if delta_name(metric) == "Δ%" else 1e-6
    lim = max(floor, *(float(np.nanmax(np.abs(grid))) for grid, _, _ in cells))
    n_rows = max(len(names) for _, names, _ in cells)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(sum(1.1 * len(p[3]) + 3 for p in panels), 0.55 * n_rows + 1.6),
        squeeze=False,
        width_ratios=[len(p[3]) for p in panels],
        layout="constrained",
    )
    for ax, (title, xlabel, _, columns, _), (grid, names, text) in zip(axes[0], panels, cells):
        # a divergence or a flip rate only grows: a scale from 0, darker for more change
        scale = ("Reds", 0, lim) if metric in GROWING else ("RdBu", -lim, lim)
        im = ax.imshow(grid, cmap=scale[0], vmin=scale[1], vmax=scale[2], aspect="auto")
        for i, row in enumerate(text):
            for j, cell in enumerate(row):
                color = "white" if abs(grid[i, j]) > 0.6 * lim else "black"
                ax.text(j, i, cell, ha="center", va="center", fontsize=7, color=color)
                if cell.endswith(UNSIGNIFICANT):
                    ax.add_patch(_hatch(i, j))
        ax.set_xticks(range(len(columns)), columns)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=9)
    unit = "" if delta_name(metric) == "Δ%" else f" ({UNITS[metric]})"
    fig.colorbar(im, ax=axes, label=f"{delta_name(metric)} {metric} vs baseline{unit}")
    fig.suptitle(
        f"{result.spec.name}: mean change per layer (hatched: ns or ≡0, structural zero)",
        fontsize=10,
    )
    return fig


UNSIGNIFICANT = ("ns", "≡0")  # the stars of cells `delta_heatmap` hatches
GROWING = ("kl", "flip_rate")  # metrics that are 0 at the baseline and cannot fall below


def _hatch(i: int, j: int) -> plt.Rectangle:
    """A hatched, unfilled cell at row ``i``, column ``j`` of an ``imshow`` grid."""
    return plt.Rectangle(
        (j - 0.5, i - 0.5), 1, 1, fill=False, hatch="//", edgecolor="0.7", linewidth=0
    )


def _heatmap_cells(
    rows: pd.DataFrame, columns: list[str], labels: pd.Series, metric: str
) -> tuple[np.ndarray, list[str], list[list[str]]]:
    """One panel of `delta_heatmap`: the grid of ``metric``'s change (Δ% or Δ), its row names
    and the cell texts; a condition's column is its entry of ``labels`` (its layer, or its
    layer set)."""
    change, relative = delta_column(metric), delta_name(metric) == "Δ%"
    keys = list(dict.fromkeys(zip(rows["intervention"], rows["mode"], rows["heads"])))
    grid = np.full((len(keys), len(columns)), np.nan)
    text = [["" for _ in columns] for _ in keys]
    for r, column in zip(rows.itertuples(index=False), labels):
        i, j = keys.index((r.intervention, r.mode, r.heads)), columns.index(column)
        grid[i, j] = getattr(r, change)
        text[i][j] = (
            f"{grid[i, j]:+.1f}\n{r.stars}" if relative else f"{grid[i, j]:+.2g}\n{r.stars}"
        )
    names = []
    for name, mode, heads in keys:
        # a panel of layer sets (explicit, all) names the mode in its title
        what = [] if mode in ("explicit", "all") else [MODE_TITLES.get(mode, mode).split(" (")[0]]
        names.append(" · ".join([name, *what, *([] if heads == "all" else [f"heads {heads}"])]))
    return grid, names, text


def condition_label(row) -> str:
    """A summary row as ``"cross · from_first 2"`` (intervention, mode, layer or layer set,
    and the head set when it is not every head).

    >>> condition_label(pd.Series({"intervention": "cross", "mode": "from_first", "layer": 2,
    ...                            "layers": "0,1,2", "heads": "all"}))
    'cross · from_first 2'
    """
    where = _x_label(row) if row["mode"] not in ("all", "input") else ""
    heads = "" if row["heads"] == "all" else f" heads {row['heads']}"
    return f"{row['intervention']} · {row['mode']} {where}".rstrip() + heads


def _chosen_conditions(summary: pd.DataFrame, conditions, top: int) -> pd.DataFrame:
    """Summary rows named in ``conditions`` (keys or `condition_label` strings), or the ``top``
    rows with the largest |Δ%| when none are named."""
    if conditions is None:
        change = summary[delta_column(summary["metric"].iloc[0])].abs()
        order = change.sort_values(ascending=False, kind="stable").index
        return summary.loc[order[:top]]
    labels = summary.apply(condition_label, axis=1)
    rows = []
    for name in [conditions] if isinstance(conditions, str) else conditions:
        hit = summary[(summary["key"] == name) | (labels == name)]
        if hit.empty:
            accepted = f"give a key or one of {sorted(set(labels))}"
            raise ArgumentError(f"condition {name!r} is not in this study; {accepted}")
        rows.append(hit.iloc[0])
    return pd.DataFrame(rows)


def class_deltas(
    result,
    conditions: str | list[str] | None = None,
    *,
    top: int = 3,
    class_names: dict[int, str] | None = None,
) -> plt.Figure:
    """Change of each class's accuracy (percentage points) under the chosen conditions: a bar
    per condition and class (the mean over subjects) and a dot per subject. ``conditions``:
    summary keys or `condition_label` strings (default the ``top`` by change). Classes are
    labelled by ``class_names``, else ``result.class_labels``; ``result.marked_classes`` are
    shaded and named in the legend."""
    per_class = result.per_class()
    chosen = _chosen_conditions(result.summary, conditions, top)
    base = per_class[per_class["intervention"] == "baseline"].set_index(["subject", "class"])
    classes = sorted(per_class["class"].unique())
    bars = 0.35 * len(classes) * max(len(chosen), 1)  # inches: narrower past MAX_WIDTH_IN
    fig, ax = plt.subplots(
        figsize=(min(MAX_WIDTH_IN, max(5.0, bars + 2)), 3.8), layout="constrained"
    )
    for k, (group, members) in enumerate(result.marked_classes.items()):
        for c in members:  # one shaded band per marked class, one legend entry per group
            ax.axvspan(
                c - 0.45,
                c + 0.45,
                color=MARK_COLORS[k % len(MARK_COLORS)],
                zorder=0,
                label=group if c == members[0] else None,
            )
    jitter = np.random.default_rng(0)
    for j, row in enumerate(chosen.itertuples(index=False)):
        masked = per_class[per_class["key"] == row.key].set_index(["subject", "class"])
        delta = 100 * (masked["accuracy"] - base["accuracy"].reindex(masked.index))
        for c in classes:
            values = delta.xs(c, level="class").dropna().to_numpy()
            label = condition_label(pd.Series(row._asdict())) if c == classes[0] else None
            draw_bar(ax, values, int(c), j, max(len(chosen), 1), jitter=jitter, label=label)
    names = class_names or {}
    labels = result.class_labels
    ticks = [names.get(int(c), labels[c] if labels else str(c)) for c in classes]
    long = max(map(len, ticks), default=0) > 4  # gesture names: slanted, to stay readable
    ax.set_xticks(
        classes, ticks, fontsize=8, rotation=30 if long else 0, ha="right" if long else "center"
    )
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel("class" + (" (the checkpoints' labels)" if labels and not names else ""))
    ax.set_ylabel("Δ accuracy vs baseline (points)")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(fontsize=8, frameon=False, loc="outside right center")
    ax.set_title(
        f"{result.spec.name}: per-class change, {len(result.baseline)} subjects "
        "(bars: mean; dots: subjects)",
        fontsize=10,
    )
    return fig


MARK_COLORS = ("#fde8c8", "#d9ecd0", "#e3dcf0")  # pale bands behind marked classes
MAX_WIDTH_IN = 20.0  # DB2's 49 gestures x 3 conditions drew a 53-inch figure
