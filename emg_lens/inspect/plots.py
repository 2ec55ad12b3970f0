"""Figures of the inspection tables, one function per table, each returning a matplotlib Figure
(the CLI saves PNG and SVG), and an optional CircuitsVis export.

- `plot_attention_flow`: group-block heatmaps, one per layer x head;
- `plot_qk_circuit` / `plot_ov_circuit`: the weight circuits (query x key scores, channel x
  class logits), one heatmap per layer x head;
- `plot_head_importance`: layer x head maps of the metric change, one panel per edge kind;
- `plot_mass_vs_effect`: attention mass against causal effect, per edge kind;
- `plot_attribution`: per-layer bars and a per-head map of direct attribution;
- `plot_distribution_shift`: cosine distance and MMD² per layer;
- `plot_pattern`: one head's attention pattern with the token groups drawn along both axes;
- `plot_patching`: what a patching sweep restored;
- `plot_probes`: probe accuracy by layer, one line per token group (dotted: the control task);
- `plot_interchange`: interchange intervention accuracy by layer, with its interval;
- `to_circuitsvis`: an interactive CircuitsVis view of one layer's patterns
  (``pip install emg_lens[viz]``).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import ListedColormap
from transformer_lens import ActivationCache

from emg_lens.errors import ArgumentError, MissingDependencyError, UnsupportedFeatureError
from emg_lens.inspect.checks import check_cache, check_model, layout_at
from emg_lens.inspect.importance import mass_effect_correlation
from emg_lens.layout import CLS, TokenLayout
from emg_lens.report.view import view_record

__all__ = [
    "attention_view_record",
    "plot_attention_flow",
    "plot_attribution",
    "plot_distribution_shift",
    "plot_head_importance",
    "plot_interchange",
    "plot_mass_vs_effect",
    "plot_ov_circuit",
    "plot_patching",
    "plot_pattern",
    "plot_probes",
    "plot_qk_circuit",
    "to_circuitsvis",
    "token_labels",
]

COLORS = plt.get_cmap("tab10").colors
CLS_COLOR = "0.55"


def _require(table: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in getattr(table, "columns", [])]
    if missing or len(table) == 0:
        raise ArgumentError(
            f"{what} needs a non-empty table with columns {columns} (as returned by the "
            f"matching emg_lens.inspect function); missing {missing or 'rows'}"
        )


def _annotate(ax, text: list[list[str]], white: np.ndarray, fontsize: int = 7) -> None:
    """Write ``text`` into the cells of a heatmap, in white where the cell is dark."""
    for i, row in enumerate(text):
        for j, cell in enumerate(row):
            color = "white" if white[i, j] else "black"
            ax.text(j, i, cell, ha="center", va="center", fontsize=fontsize, color=color)


def _dark(grid: np.ndarray, lim: float) -> np.ndarray:
    """Cells of a diverging map (``-lim..lim``) dark enough for white text."""
    return np.nan_to_num(np.abs(grid)) > 0.6 * lim


def token_labels(layout: TokenLayout) -> list[str]:
    """A short name per token: ``cls``, or its channel's name where the layout names its
    channels (``C3``), else the group and the channel's index within it (``acc3``), with
    ``:t{patch}`` when channels have several patches.

    >>> token_labels(TokenLayout.channel_tokens({"emg": 1, "acc": 2}))
    ['cls', 'emg0', 'acc0', 'acc1']
    >>> token_labels(TokenLayout.channel_tokens({"eeg": 2}, channel_names=["C3", "C4"]))
    ['cls', 'C3', 'C4']
    >>> token_labels(TokenLayout(("query",) * 2, (-1, -1), (-1, -1)))  # learned queries
    ['query0', 'query1']
    """
    first = {
        g: min(c for gg, c in zip(layout.group, layout.channel) if gg == g)
        for g in layout.modalities
    }
    several = len(set(layout.time) - {-1}) > 1
    names: list[str] = []
    for group, channel, time in zip(layout.group, layout.channel, layout.time):
        if group == CLS:
            names.append(CLS)
        elif channel < 0:  # a token of no channel (a learned query): its index in its group
            names.append(f"{group}{sum(n.startswith(group) for n in names)}")
        else:
            suffix = f":t{time}" if several else ""
            name = layout.channel_names[channel] if layout.channel_names else None
            names.append(f"{name or f'{group}{channel - first[group]}'}{suffix}")
    return names


# ------------------------------------------------------------------------------- flow


def plot_attention_flow(flow: pd.DataFrame, *, value: str = "mass") -> plt.Figure:
    """Query-group x key-group heatmaps, one per (layer, head), from `attention_flow`.
    ``value="mass"`` shows the attention mass (0..1); ``"ratio"`` its ratio to uniform
    attention on a log2 scale (red: more than uniform)."""
    if value not in ("mass", "ratio"):
        raise ArgumentError(f"value must be 'mass' or 'ratio', got {value!r}")
    columns = ["layer", "head", "query_group", "key_group", "uniform", value]
    _require(flow, columns, "plot_attention_flow")
    groups = list(dict.fromkeys(flow["query_group"]))
    layers, heads = sorted(flow["layer"].unique()), sorted(flow["head"].unique())
    uniform = flow.drop_duplicates("key_group").set_index("key_group")["uniform"]
    key_labels = [f"{g} ({uniform[g]:.2f})" for g in groups]
    size = 0.35 * len(groups) + 1.0
    fig, axes = plt.subplots(
        len(layers),
        len(heads),
        figsize=(size * len(heads) + 1.6, size * len(layers) + 1.2),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    if value == "mass":
        cmap, vmin, vmax, label = "viridis", 0.0, 1.0, "attention mass (query group → key group)"
    else:
        lim = max(1.0, float(np.nanmax(np.abs(np.log2(flow["ratio"].clip(lower=1e-6))))))
        cmap, vmin, vmax, label = "RdBu_r", -lim, lim, "log2(mass / uniform)"
    for i, layer in enumerate(layers):
        for j, head in enumerate(heads):
            ax = axes[i][j]
            cell = flow[(flow["layer"] == layer) & (flow["head"] == head)]
            grid = cell.pivot(index="query_group", columns="key_group", values=value)
            grid = grid.reindex(index=groups, columns=groups).to_numpy(dtype=float)
            shown = grid if value == "mass" else np.log2(np.clip(grid, 1e-6, None))
            im = ax.imshow(shown, cmap=cmap, vmin=vmin, vmax=vmax)
            if len(groups) <= 4:
                text = [[f"{v:.2f}" for v in row] for row in grid]
                _annotate(ax, text, shown < 0.5 if value == "mass" else _dark(shown, vmax))
            ax.set_xticks(range(len(groups)), key_labels, rotation=90, fontsize=7)
            ax.set_yticks(range(len(groups)), groups, fontsize=7)
            if i == 0:
                ax.set_title(f"head {head}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"layer {layer}\nquery", fontsize=8)
            if i == len(layers) - 1:
                ax.set_xlabel("key (uniform share)", fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label=label)
    fig.suptitle("Attention flow between token groups (rows: query, columns: key)", fontsize=10)
    return fig


# ------------------------------------------------------------------------------- circuits


def plot_qk_circuit(table: pd.DataFrame) -> plt.Figure:
    """Query x key heatmaps of the weight-based attention scores, one per (layer, head), from
    `emg_lens.inspect.qk_circuit` (channels or groups; red: a query wants that key).

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.inspect.circuits import qk_circuit
    >>> from emg_lens.models import IsoNet
    >>> fig = plot_qk_circuit(qk_circuit(IsoNet(EncoderConfig.preset("tiny", seed=0)), 0))
    >>> len([ax for ax in fig.axes if ax.get_images()])  # one panel per head
    4
    >>> plt.close(fig)
    """
    _require(table, ["layer", "head", "query", "key", "score"], "plot_qk_circuit")
    return _circuit_grid(
        table,
        ("query", "key", "score"),
        "score before the softmax (data-free embeddings)",
        "Weight-based QK circuit: which channel wants to read which (direct path)",
    )


def plot_ov_circuit(table: pd.DataFrame) -> plt.Figure:
    """Channel x class heatmaps of what each head writes into the class logits when it reads a
    channel, one per (layer, head), from `emg_lens.inspect.ov_circuit`.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.inspect.circuits import ov_circuit
    >>> from emg_lens.models import IsoNet
    >>> fig = plot_ov_circuit(ov_circuit(IsoNet(EncoderConfig.preset("tiny", seed=0)), 1, 0))
    >>> [label.get_text() for label in fig.axes[0].get_yticklabels()][:3]
    ['cls', 'ch0', 'ch1']
    >>> plt.close(fig)
    """
    _require(table, ["layer", "head", "channel", "class", "logit"], "plot_ov_circuit")
    return _circuit_grid(
        table,
        ("channel", "class", "logit"),
        "logit per unit attention (× 1/ln_final scale)",
        "Weight-based OV circuit: what a head writes to each class when it reads a channel",
    )


def _circuit_grid(
    table: pd.DataFrame, axes_value: tuple[str, str, str], label: str, title: str
) -> plt.Figure:
    """Heatmaps of ``value`` (rows ``row``, columns ``column``), one per (layer, head), on one
    diverging scale centred at zero; cells are written out while they fit."""
    row, column, value = axes_value
    rows, columns = list(dict.fromkeys(table[row])), list(dict.fromkeys(table[column]))
    layers, heads = sorted(table["layer"].unique()), sorted(table["head"].unique())
    lim = max(1e-6, float(np.nanmax(np.abs(table[value].to_numpy(dtype=float)))))
    width, height = 0.3 * len(columns) + 1.0, 0.3 * len(rows) + 1.0
    fig, axes = plt.subplots(
        len(layers),
        len(heads),
        figsize=(width * len(heads) + 1.8, height * len(layers) + 1.2),
        squeeze=False,
        sharex=True,
        sharey=True,
        layout="constrained",
    )
    for i, layer in enumerate(layers):
        for j, head in enumerate(heads):
            ax = axes[i][j]
            cell = table[(table["layer"] == layer) & (table["head"] == head)]
            grid = cell.pivot(index=row, columns=column, values=value)
            grid = grid.reindex(index=rows, columns=columns).to_numpy(dtype=float)
            im = ax.imshow(grid, cmap="RdBu_r", vmin=-lim, vmax=lim)
            if len(rows) <= 8 and len(columns) <= 8:
                _annotate(ax, [[f"{v:.2f}" for v in r] for r in grid], _dark(grid, lim), 6)
            ax.set_xticks(range(len(columns)), [str(c) for c in columns], rotation=90, fontsize=7)
            ax.set_yticks(range(len(rows)), [str(r) for r in rows], fontsize=7)
            if i == 0:
                ax.set_title(f"head {head}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"layer {layer}\n{row}", fontsize=8)
            if i == len(layers) - 1:
                ax.set_xlabel(column, fontsize=8)
    fig.colorbar(im, ax=axes, shrink=0.6, label=label)
    fig.suptitle(title, fontsize=10)
    return fig


# ------------------------------------------------------------------------------- importance


def plot_head_importance(table: pd.DataFrame) -> plt.Figure:
    """Layer x head maps of the metric change when a head's edges of one kind are cut in one
    layer, one panel per kind, from `head_importance` (text: change and rank)."""
    _require(table, ["kind", "layer", "head", "delta", "rank"], "plot_head_importance")
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
        _annotate(ax, text, _dark(grid, lim))
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


def plot_mass_vs_effect(table: pd.DataFrame) -> plt.Figure:
    """Attention mass on a kind of edge against the drop in the metric when those edges are
    cut, one point per (layer, head) and one panel per kind, with the Spearman correlation."""
    _require(table, ["kind", "layer", "head", "mass", "delta"], "plot_mass_vs_effect")
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


# ------------------------------------------------------------------------------- attribution


def plot_attribution(table: pd.DataFrame) -> plt.Figure:
    """Direct attribution from `direct_attribution`, averaged over windows: bars per layer-level
    component (embeddings, each layer's attention = its heads + ``b_O``, each MLP, biases;
    error bars: standard deviation over windows) and a layer x head map."""
    _require(table, ["sample", "component", "kind", "layer", "head", "value"], "plot_attribution")
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
    _annotate(grid_ax, text, _dark(grid.to_numpy(dtype=float), lim))
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


# ------------------------------------------------------------------------------- shift


def plot_distribution_shift(shift: pd.DataFrame) -> plt.Figure:
    """Cosine distance and MMD² between masked and unmasked residual streams per layer, one
    line per token group, from `distribution_shift` (masked layers shaded; dashed: the MMD²
    that no shift would give, ``mmd2_null``)."""
    columns = ["layer", "group", "masked", "cosine_distance", "mmd2", "mmd2_null"]
    _require(shift, columns, "plot_distribution_shift")
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.6), sharex=True)
    masked = sorted(shift.loc[shift["masked"], "layer"].unique())
    titles = ["cosine distance (per token)", "MMD² per position (dashed: no-shift level)"]
    for ax, column, title in zip(axes, ["cosine_distance", "mmd2"], titles):
        for layer in masked:
            ax.axvspan(layer - 0.5, layer + 0.5, color="0.9", zorder=0)
        for k, (group, rows) in enumerate(shift.groupby("group", sort=False)):
            style = {"color": "black", "lw": 2} if group == "all" else {"color": COLORS[k % 10]}
            ax.plot(rows["layer"], rows[column], marker="o", label=group, **style)
            if column == "mmd2":
                ax.plot(rows["layer"], rows["mmd2_null"], ls="--", lw=1, color=style["color"])
        ax.set_xlabel("layer (residual stream after the block)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_xticks(sorted(shift["layer"].unique()))
    axes[0].legend(fontsize=8, frameon=False, title="tokens", title_fontsize=8)
    fig.suptitle("Distribution shift of the ablation (shaded: masked layers)", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------- patterns


def plot_pattern(
    model: Any, cache: ActivationCache, layer: int, head: int, *, sample: int | None = None
) -> plt.Figure:
    """One head's attention pattern (window ``sample``, or the mean over the cached windows)
    with a colour strip per token group along both axes."""
    check_model(model)
    cache = check_cache(cache, model, [f"blocks.{layer}.attn.hook_pattern"])
    if not isinstance(head, int) or not 0 <= head < model.cfg.n_heads:
        raise ArgumentError(f"head must be in [0, {model.cfg.n_heads - 1}], got {head!r}")
    pattern = cache["pattern", layer][:, head]
    if sample is None:
        pattern, what = pattern.mean(0), f"mean of {len(pattern)} windows"
    elif isinstance(sample, int) and 0 <= sample < len(pattern):
        pattern, what = pattern[sample], f"window {sample}"
    else:
        raise ArgumentError(f"sample must be None or in [0, {len(pattern) - 1}], got {sample!r}")
    layout = layout_at(model, f"blocks.{layer}.attn.hook_pattern")  # cross: 2 sides
    queries, n = layout.query_side, layout.n_tokens
    groups = layout.all_groups
    index = {g: i for i, g in enumerate(groups)}
    ids = np.array([index[g] for g in layout.group])
    query_ids = np.array([index[g] for g in queries.group])
    palette = ListedColormap(
        [CLS_COLOR if g == CLS else COLORS[i % 10] for i, g in enumerate(groups)]
    )
    fig = plt.figure(figsize=(7.4, 6.6))
    grid = fig.add_gridspec(
        2,
        4,
        width_ratios=[0.035, 1, 0.1, 0.035],  # the third column holds the query names
        height_ratios=[0.035, 1],
        wspace=0.02,
        hspace=0.02,
    )
    main = fig.add_subplot(grid[1, 1])
    im = main.imshow(pattern.detach().cpu().numpy(), cmap="magma", vmin=0, aspect="auto")
    left, top = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[0, 1])
    strip = {"cmap": palette, "vmin": 0, "vmax": len(groups) - 1, "aspect": "auto"}
    left.imshow(query_ids[:, None], **strip)
    top.imshow(ids[None, :], **strip)
    for axis in (left, top, main):
        axis.set_xticks([])
        axis.set_yticks([])
    _name_runs(top, layout, vertical=False)
    _name_runs(left, queries, vertical=True)
    if max(n, queries.n_tokens) <= 60:  # token names fit
        main.set_xticks(range(n), token_labels(layout), rotation=90, fontsize=6)
        main.yaxis.tick_right()
        main.set_yticks(range(queries.n_tokens), token_labels(queries), fontsize=6)
    cross = layout.queries is not None
    left.set_ylabel("query token" + (" (queries)" if cross else ""), fontsize=9)
    main.set_xlabel("key token" + (" (keys)" if cross else ""), fontsize=9)
    fig.colorbar(im, cax=fig.add_subplot(grid[1, 3]), label="attention")
    top.set_title(f"layer {layer}, head {head}: {what}", fontsize=10, pad=6)
    return fig


def _name_runs(strip, layout: TokenLayout, *, vertical: bool) -> None:
    """Write each group's name on a colour strip, at the middle of each run of 3+ tokens."""
    start = 0
    for i in range(1, layout.n_tokens + 1):
        if i == layout.n_tokens or layout.group[i] != layout.group[start]:
            if i - start >= 3:
                mid, name = (start + i - 1) / 2, layout.group[start]
                x, y, rotation = (0, mid, 90) if vertical else (mid, 0, 0)
                strip.text(
                    x, y, name, ha="center", va="center", fontsize=7, color="white",
                    rotation=rotation,
                )  # fmt: skip
            start = i


# ------------------------------------------------------------------------------- patching


def plot_patching(table: pd.DataFrame) -> plt.Figure:
    """What a patching sweep restored (``restored``: 0 = corrupted, 1 = clean): a layer x head
    map (`patch_heads`), a layer x position map (`patch_residual`) or a line over layers
    (`patch_token_group`)."""
    _require(table, ["layer", "restored"], "plot_patching")
    if "head" in table or "position" in table:
        column = "head" if "head" in table else "position"
        grid = table.pivot(index="layer", columns=column, values="restored")
        values = grid.to_numpy(dtype=float)
        width = min(14.0, 0.45 * grid.shape[1] + 2.5)
        fig, ax = plt.subplots(figsize=(width, 0.45 * grid.shape[0] + 1.6))
        im = ax.imshow(values, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
        if values.size <= 120:
            _annotate(ax, [[f"{v:.2f}" for v in row] for row in values], _dark(values, 1.0))
        ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], fontsize=7)
        ax.set_yticks(range(grid.shape[0]), [str(layer) for layer in grid.index])
        ax.set_xlabel(column)
        ax.set_ylabel("layer")
        fig.colorbar(im, ax=ax, label="restored (1 = clean)")
        what = "head output (hook_z)" if column == "head" else "residual stream position"
    else:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for k, (group, rows) in enumerate(table.groupby("group", sort=False)):
            ax.plot(rows["layer"], rows["restored"], marker="o", color=COLORS[k % 10], label=group)
        ax.axhline(1, color="0.5", ls="--", lw=0.8)
        ax.axhline(0, color="0.5", lw=0.8)
        ax.set_xticks(sorted(table["layer"].unique()))
        ax.set_xlabel("layer (residual stream entering it)")
        ax.set_ylabel("restored (1 = clean)")
        ax.legend(fontsize=8, frameon=False, title="patched group", title_fontsize=8)
        ax.grid(alpha=0.3)
        what = "token group"
    ax.set_title(f"Activation patching: {what}", fontsize=10)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------- CircuitsVis


def _view_inputs(cache: ActivationCache, layer: int, sample: int) -> tuple[Any, list, list]:
    """One cached window's patterns of ``layer`` ``[head, query, key]``, the tokens' names and
    the heads' names, for an attention view (checked as `to_circuitsvis` says)."""
    if not isinstance(cache, ActivationCache):
        raise ArgumentError(
            f"an attention view needs an ActivationCache from model.run_with_cache, got "
            f"{type(cache).__name__}"
        )
    model = check_model(cache.model)
    check_cache(cache, model, [f"blocks.{layer}.attn.hook_pattern"])
    pattern = cache["pattern", layer]
    if not isinstance(sample, int) or not 0 <= sample < len(pattern):
        raise ArgumentError(f"sample must be in [0, {len(pattern) - 1}], got {sample!r}")
    layout = layout_at(model, f"blocks.{layer}.attn.hook_pattern")
    if layout.queries is not None:
        raise UnsupportedFeatureError(
            f"circuitsvis draws attention among one list of tokens, but layer {layer} is a "
            f"cross-attention ({layout.describe_sides()}): draw it with plot_pattern, which "
            "names both sides"
        )
    heads = [f"L{layer}H{h}" for h in range(pattern.shape[1])]
    return pattern[sample].detach().cpu(), token_labels(layout), heads


def attention_view_record(cache: ActivationCache, layer: int, *, sample: int = 0) -> dict[str, Any]:
    """What ``attention_view.json`` holds for one cached window's ``layer``: the tokens'
    names, the heads' names and every head's pattern (`emg_lens.report.view.view_record`),
    from which ``report.html`` builds the interactive view. Needs no optional package."""
    pattern, tokens, heads = _view_inputs(cache, layer, sample)
    return view_record(tokens, heads, pattern.double())


def to_circuitsvis(cache: ActivationCache, layer: int, *, sample: int = 0) -> Any:
    """An interactive CircuitsVis view (``circuitsvis.attention.attention_heads``) of every
    head's pattern in ``layer`` for one cached window, tokens named by `token_labels` (the
    channels' names where the layout has them). Its ``local_src`` is a self-contained page
    fragment (the view's script inline); ``str()`` of it loads the script from a CDN. Needs
    the optional dependency: ``pip install emg_lens[viz]``."""
    pattern, tokens, heads = _view_inputs(cache, layer, sample)
    try:
        import circuitsvis
        import circuitsvis.attention  # the submodule holding the view
    except ImportError as exc:
        raise MissingDependencyError(
            "to_circuitsvis needs the optional package circuitsvis: pip install emg_lens[viz]",
            name="circuitsvis",
        ) from exc
    return circuitsvis.attention.attention_heads(
        attention=pattern,
        tokens=tokens,
        attention_head_names=heads,
        max_value=float(pattern.max()),  # the strongest weight darkest
        # an encoder attends both ways: CircuitsVis greys the upper triangle (a causal
        # model's future) unless told
        mask_upper_tri=False,
    )


# ------------------------------------------------------------------- probes, interchange


def plot_probes(table: pd.DataFrame) -> plt.Figure:
    """Probe accuracy by layer, one line per token group (dotted: the same probe on the control
    task; grey: chance), one panel per ``cut`` condition when the table has that column, from
    `emg_lens.inspect.probe_tokens` (several subjects' rows are averaged).

    >>> table = pd.DataFrame({"layer": [0, 1], "group": "emg", "accuracy": [0.3, 0.9],
    ...                       "control_accuracy": [0.3, 0.4], "chance": 0.25})
    >>> len(plot_probes(table).axes)
    1
    """
    _require(table, ["layer", "group", "accuracy", "control_accuracy", "chance"], "plot_probes")
    table = table.assign(cut=table.get("cut", "none"))
    cuts = list(dict.fromkeys(table["cut"]))
    fig, axes = plt.subplots(1, len(cuts), figsize=(4.6 * len(cuts), 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, cut in zip(axes, cuts):
        rows = table[table["cut"] == cut]
        mean = rows.groupby(["group", "layer"], sort=False)[["accuracy", "control_accuracy"]]
        mean = mean.mean().reset_index()
        for k, (group, g) in enumerate(mean.groupby("group", sort=False)):
            color = COLORS[k % 10]
            ax.plot(g["layer"], g["accuracy"], marker="o", color=color, label=str(group))
            ax.plot(g["layer"], g["control_accuracy"], ls=":", color=color, lw=1)
        ax.axhline(float(rows["chance"].mean()), color="0.6", lw=1, ls="--")
        ax.set_xticks(sorted(rows["layer"].unique()))
        ax.set_xlabel("layer (residual stream entering it; last: after the last block)")
        ax.set_title("no edge cut" if cut == "none" else f"cut: {cut}", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("held-out probe accuracy")
    axes[0].legend(fontsize=8, frameon=False, title="tokens", title_fontsize=8)
    n = table["subject"].nunique() if "subject" in table else 1
    fig.suptitle(
        f"Linear probes by layer ({n} subject{'s' * (n != 1)}; dotted: control task, "
        "dashed: chance)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def plot_interchange(table: pd.DataFrame) -> plt.Figure:
    """Interchange intervention accuracy by layer, one line per site (``group``) and ``cut``,
    pooled over subjects (``k`` of ``n`` pairs). The bars are the table's 95 % intervals
    (``ci_low``, ``ci_high``: over trials where the pairs carried them,
    `emg_lens.inspect.interchange`) where each point is one subject's; a table without them, or
    of several subjects, gets Clopper-Pearson over the pooled pairs, which counts every pair as
    independent (the title says which).

    >>> table = pd.DataFrame({"layer": [0, 1], "group": "acc", "k": [80, 30], "n": 100})
    >>> len(plot_interchange(table).axes[0].lines) >= 1
    True
    """
    from emg_lens.studies.stats import clopper_pearson

    _require(table, ["layer", "group", "k", "n"], "plot_interchange")
    table = table.assign(cut=table.get("cut", "none"))
    keys = ["cut", "group", "layer"]
    own = {"ci_low", "ci_high"} <= set(table.columns) and not table.duplicated(keys).any()
    unit = str(table["unit"].iloc[0]) if own and "unit" in table.columns else "pair"
    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    pooled = table.groupby(keys, sort=False)[["k", "n"]].sum().reset_index()
    if own:
        pooled = pooled.merge(table[[*keys, "ci_low", "ci_high"]], on=keys, how="left")
    for k, ((cut, group), rows) in enumerate(pooled.groupby(["cut", "group"], sort=False)):
        iia = rows["k"] / rows["n"]
        if own:
            low, high = rows["ci_low"], rows["ci_high"]
        else:
            low, high = clopper_pearson(rows["k"], rows["n"])
        label = f"{group}" + ("" if cut == "none" else f", cut {cut}")
        style = {"color": COLORS[k % 10], "ls": "-" if cut == "none" else "--", "label": label}
        ax.errorbar(
            rows["layer"], iia, yerr=[iia - low, high - iia], marker="o", capsize=3, **style
        )
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(sorted(table["layer"].unique()))
    ax.set_xlabel("layer (residual stream entering it)")
    ax.set_ylabel("interchange intervention accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, title="tokens taken from the source", title_fontsize=8)
    over = "resampling trials" if unit == "trial" else "over pairs"
    ax.set_title(f"Predictions that follow the source's label (95 % interval {over})", fontsize=10)
    fig.tight_layout()
    return fig
