"""What the heads do, layer x head: attention flow between token groups, the weight circuits
(QK: which channel a query wants; OV: what a head writes into each class), head importance
(and attention mass against effect) and direct attribution."""

from __future__ import annotations

import math
from collections.abc import Callable

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.image import AxesImage

from emg_lens.errors import check_choice, checked
from emg_lens.inspect.checks import require_columns
from emg_lens.inspect.importance import mass_effect_correlation
from emg_lens.inspect.plots.style import annotate_cells, dark_cells
from emg_lens.studies.plots import COLORS


def _head_grid(
    table: pd.DataFrame,
    axes_value: tuple[str, str, str],
    order: tuple[list, list],
    labels: tuple[list[str], list[str], str, str],
    cell: tuple[float, float, float],
    draw: Callable[[plt.Axes, np.ndarray], AxesImage],
    titles: tuple[str, str],
    tick_step: int = 1,
) -> plt.Figure:
    """One heatmap per (layer, head) of ``table`` (``axes_value``: ``value``, ``row``,
    ``column``) in ``order``, labelled ``labels`` (row ticks, column ticks, axis names; every
    ``tick_step``-th tick), each panel ``cell`` in size, drawn by ``draw(ax, grid)``."""
    row, column, value = axes_value
    rows, columns = order
    layers, heads = sorted(table["layer"].unique()), sorted(table["head"].unique())
    width, height, extra = cell
    fig, axes = plt.subplots(
        len(layers),
        len(heads),
        figsize=(width * len(heads) + extra, height * len(layers) + 1.2),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    for i, layer in enumerate(layers):
        for j, head in enumerate(heads):
            ax = axes[i][j]
            part = table[(table["layer"] == layer) & (table["head"] == head)]
            grid = part.pivot(index=row, columns=column, values=value)
            im = draw(ax, grid.reindex(index=rows, columns=columns).to_numpy(dtype=float))
            ax.set_xticks(range(0, len(columns), tick_step), labels[1][::tick_step], rotation=90)
            ax.set_yticks(range(0, len(rows), tick_step), labels[0][::tick_step])
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(f"head {head}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"layer {layer}\n{labels[2]}", fontsize=8)
            if i == len(layers) - 1:
                ax.set_xlabel(labels[3], fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label=titles[0])
    fig.suptitle(titles[1], fontsize=10)
    return fig


@checked
def plot_attention_flow(flow: pd.DataFrame, *, value: str = "mass") -> plt.Figure:
    """Query-group x key-group heatmaps, one per (layer, head), from `attention_flow`.
    ``value="mass"`` shows the attention mass (0..1); ``"ratio"`` its ratio to uniform
    attention on a log2 scale (red: more than uniform)."""
    check_choice(value, ("mass", "ratio"), "value")
    columns = ["layer", "head", "query_group", "key_group", "uniform", value]
    require_columns(flow, columns, "plot_attention_flow")
    groups = list(dict.fromkeys(flow["query_group"]))
    uniform = flow.drop_duplicates("key_group").set_index("key_group")["uniform"]
    key_labels = [f"{g} ({uniform[g]:.2f})" for g in groups]
    size = 0.35 * len(groups) + 1.0
    if value == "mass":
        cmap, vmin, vmax, label = "viridis", 0.0, 1.0, "attention mass (query group → key group)"
    else:
        lim = max(1.0, float(np.nanmax(np.abs(np.log2(flow["ratio"].clip(lower=1e-6))))))
        cmap, vmin, vmax, label = "RdBu_r", -lim, lim, "log2(mass / uniform)"

    def draw(ax: plt.Axes, grid: np.ndarray) -> AxesImage:
        shown = grid if value == "mass" else np.log2(np.clip(grid, 1e-6, None))
        im = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax)
        if len(groups) <= 4:
            text = [[f"{v:.2f}" for v in row] for row in grid]
            annotate_cells(ax, text, shown < 0.5 if value == "mass" else dark_cells(shown, vmax))
        return im

    return _head_grid(
        flow,
        ("query_group", "key_group", value),
        (groups, groups),
        (groups, key_labels, "query", "key (uniform share)"),
        (size, size, 1.6),
        draw,
        (label, "Attention flow between token groups (rows: query, columns: key)"),
    )


@checked
def plot_qk_circuit(table: pd.DataFrame) -> plt.Figure:
    """Query x key heatmaps of the weight-based attention scores, one per (layer, head), from
    `emg_lens.inspect.qk_circuit` (channels or groups; red: a query wants that key).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.inspect import qk_circuit
    >>> from emg_lens.models import IsoNet
    >>> fig = plot_qk_circuit(qk_circuit(IsoNet(EncoderConfig.preset("tiny", seed=0)), 0))
    >>> len([ax for ax in fig.axes if ax.get_images()])  # one panel per head
    4
    >>> plt.close(fig)
    """
    return _circuit_grid(table, "plot_qk_circuit", *_QK)


@checked
def plot_ov_circuit(table: pd.DataFrame) -> plt.Figure:
    """Channel x class heatmaps of what each head writes into the class logits when it reads a
    channel, one per (layer, head), from `emg_lens.inspect.ov_circuit`.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.inspect import ov_circuit
    >>> from emg_lens.models import IsoNet
    >>> fig = plot_ov_circuit(ov_circuit(IsoNet(EncoderConfig.preset("tiny", seed=0)), 1, 0))
    >>> [label.get_text() for label in fig.axes[0].get_yticklabels()][:3]
    ['cls', 'ch0', 'ch1']
    >>> plt.close(fig)
    """
    return _circuit_grid(table, "plot_ov_circuit", *_OV)


# A weight circuit's cells: 0.3 in square, smaller where the grid of every (layer, head) panel
# would be wider or taller than a screen (DB2's 49 channels x 49 gestures in four heads made a
# 65-inch figure), never below a few pixels; a tick label needs TICK_LABEL_IN (7 pt text).
CIRCUIT_CELL_IN, MIN_CELL_IN, MAX_FIGURE_IN, TICK_LABEL_IN = 0.3, 0.04, 16.0, 0.12


def _circuit_cell(n_rows: int, n_columns: int, n_layers: int, n_heads: int) -> float:
    """The side in inches of a circuit grid's square cell (see `CIRCUIT_CELL_IN`).

    >>> _circuit_cell(7, 7, 2, 4), _circuit_cell(49, 49, 2, 4) < 0.06
    (0.3, True)
    """
    wide = ((MAX_FIGURE_IN - 1.8) / n_heads - 1.0) / n_columns
    tall = ((MAX_FIGURE_IN - 1.2) / n_layers - 1.0) / n_rows
    return max(MIN_CELL_IN, min(CIRCUIT_CELL_IN, wide, tall))


# The weight circuits' tables: their (row, column, value) columns, the colour bar and the title.
_QK = (
    ("query", "key", "score"),
    "score before the softmax (data-free embeddings)",
    "Weight-based QK circuit: which channel wants to read which (direct path)",
)
_OV = (
    ("channel", "class", "logit"),
    "logit per unit attention (× 1/ln_final scale)",
    "Weight-based OV circuit: what a head writes to each class when it reads a channel",
)


def _circuit_grid(
    table: pd.DataFrame, what: str, axes_value: tuple[str, str, str], label: str, title: str
) -> plt.Figure:
    """Heatmaps of ``value`` (rows ``row``, columns ``column``), one per (layer, head), on one
    diverging scale centred at zero; cells are written out while they fit. ``what``: the
    figure's name, for the error of a table without those columns."""
    require_columns(table, ["layer", "head", *axes_value], what)
    row, column, value = axes_value
    rows, columns = list(dict.fromkeys(table[row])), list(dict.fromkeys(table[column]))
    lim = max(1e-6, float(np.nanmax(np.abs(table[value].to_numpy(dtype=float)))))

    def draw(ax: plt.Axes, grid: np.ndarray) -> AxesImage:
        im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim)
        if len(rows) <= 8 and len(columns) <= 8:
            annotate_cells(ax, [[f"{v:.2f}" for v in r] for r in grid], dark_cells(grid, lim), 6)
        return im

    side = _circuit_cell(len(rows), len(columns), table["layer"].nunique(), table["head"].nunique())
    return _head_grid(
        table,
        axes_value,
        (rows, columns),
        ([str(r) for r in rows], [str(c) for c in columns], row, column),
        (side * len(columns) + 1.0, side * len(rows) + 1.0, 1.8),
        draw,
        (label, title),
        tick_step=math.ceil(TICK_LABEL_IN / side),
    )


@checked
def plot_head_importance(table: pd.DataFrame) -> plt.Figure:
    """Layer x head maps of the metric change when a head's edges of one kind are cut in one
    layer, one panel per kind, from `head_importance` (text: change and rank)."""
    require_columns(table, ["kind", "layer", "head", "delta", "rank"], "plot_head_importance")
    kinds = list(dict.fromkeys(table["kind"]))
    layers, heads = sorted(table["layer"].unique()), sorted(table["head"].unique())
    lim = max(1e-3, float(table["delta"].abs().max()))
    fig, axes = plt.subplots(
        1,
        len(kinds),
        figsize=(0.75 * len(heads) * len(kinds) + 2.4, 0.5 * len(layers) + 1.6),
        squeeze=False,
        layout="constrained",  # the suptitle above the panel titles, the axis labels inside
    )
    for ax, kind in zip(axes[0], kinds):
        rows = table[table["kind"] == kind]
        grid = rows.pivot(index="layer", columns="head", values="delta")
        grid = grid.reindex(index=layers, columns=heads).to_numpy(dtype=float)
        rank = rows.pivot(index="layer", columns="head", values="rank").reindex(
            index=layers, columns=heads
        )
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        text = [
            [f"{grid[i, j]:+.2f}\n#{rank.iloc[i, j]}" for j in range(len(heads))]
            for i in range(len(layers))
        ]
        annotate_cells(ax, text, dark_cells(grid, lim))
        ax.set_xticks(range(len(heads)), [str(h) for h in heads])
        ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"mask {kind} edges", fontsize=10)
    metric = table["metric"].iloc[0] if "metric" in table else "metric"
    baseline = f" (baseline {table['baseline'].iloc[0]:.3f})" if "baseline" in table else ""
    fig.colorbar(im, ax=axes, shrink=0.8, label=f"Δ {metric} vs unmasked")
    fig.suptitle(f"Head importance: one head, one layer at a time{baseline}", fontsize=10)
    return fig


@checked
def plot_mass_vs_effect(table: pd.DataFrame) -> plt.Figure:
    """Attention mass on a kind of edge against the drop in the metric when those edges are
    cut, one point per (layer, head) and one panel per kind, with the Spearman correlation."""
    require_columns(table, ["kind", "layer", "head", "mass", "delta"], "plot_mass_vs_effect")
    kinds = list(dict.fromkeys(table["kind"]))
    corr = mass_effect_correlation(table).set_index("kind")
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.6), squeeze=False)
    for k, (ax, kind) in enumerate(zip(axes[0], kinds)):
        rows = table[table["kind"] == kind]
        ax.scatter(rows["mass"], -rows["delta"], color=COLORS[k % 10], s=28, alpha=0.8)
        for r in rows.itertuples(index=False):
            ax.annotate(
                f"L{r.layer}H{r.head}",
                (r.mass, -r.delta),
                fontsize=6,
                xytext=(3, 2),
                textcoords="offset points",
            )
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel(f"attention mass on {kind} edges")
        ax.set_ylabel("drop in metric when cut")
        rho = corr.loc[kind, "spearman_rho"]
        ax.set_title(f"{kind}: Spearman ρ = {rho:.2f}", fontsize=10)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


@checked
def plot_attribution(table: pd.DataFrame) -> plt.Figure:
    """Direct attribution from `direct_attribution`, averaged over windows: bars per layer-level
    component (embeddings, each layer's attention = its heads + ``b_O``, each MLP, biases;
    error bars: standard deviation over windows) and a layer x head map."""
    require_columns(
        table, ["sample", "component", "kind", "layer", "head", "value"], "plot_attribution"
    )
    level = table.assign(
        part=np.where(
            table["kind"].isin(["head", "attn_bias"]),
            "L" + table["layer"].astype(str) + " attn",
            table["component"],
        )
    )
    per_sample = level.groupby(["part", "sample"], sort=False)["value"].sum().unstack("sample")
    mean, std = per_sample.mean(axis=1), per_sample.std(axis=1).fillna(0.0)
    heads = table[table["kind"] == "head"]
    fig, (bars, grid_ax) = plt.subplots(
        1, 2, figsize=(11, 4.0), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    colors = [
        COLORS[0] if "attn" in p else COLORS[1] if "mlp" in p else COLORS[7] for p in mean.index
    ]
    bars.bar(range(len(mean)), mean, yerr=std, color=colors, alpha=0.8, capsize=2)
    bars.set_xticks(range(len(mean)), mean.index, rotation=60, ha="right", fontsize=8)
    bars.axhline(0, color="0.3", lw=0.8)
    bars.set_ylabel("contribution (mean ± sd over windows)")
    bars.set_title("per component", fontsize=10)
    bars.grid(axis="y", alpha=0.3)
    grid = heads.groupby(["layer", "head"])["value"].mean().unstack("head")
    lim = max(1e-6, float(np.abs(grid.to_numpy()).max()))
    im = grid_ax.imshow(grid.to_numpy(dtype=float), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    text = [[f"{v:+.2f}" for v in row] for row in grid.to_numpy(dtype=float)]
    annotate_cells(grid_ax, text, dark_cells(grid.to_numpy(dtype=float), lim))
    grid_ax.set_xticks(range(grid.shape[1]), [str(h) for h in grid.columns])
    grid_ax.set_yticks(range(grid.shape[0]), [str(layer) for layer in grid.index])
    grid_ax.set_xlabel("head")
    grid_ax.set_ylabel("layer")
    grid_ax.set_title("per head (mean)", fontsize=10)
    fig.colorbar(im, ax=grid_ax, shrink=0.8)
    total = per_sample.sum(axis=0).mean()
    fig.suptitle(
        f"Direct attribution to the correct class over {per_sample.shape[1]} windows "
        f"(mean total {total:.2f})",
        fontsize=10,
    )
    fig.tight_layout()
    return fig
