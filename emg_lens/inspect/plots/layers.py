"""What changes layer by layer: the distribution shift an ablation causes, what activation
patching restores, what linear probes read from each token group, and how often interchange
interventions carry the source's label."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from emg_lens._hints import checked
from emg_lens.inspect.checks import require_columns
from emg_lens.inspect.plots.style import annotate_cells, dark_cells
from emg_lens.studies.plots import COLORS


@checked
def plot_distribution_shift(shift: pd.DataFrame) -> plt.Figure:
    """Cosine distance and MMD² between masked and unmasked residual streams per layer, one
    line per token group, from `distribution_shift` (masked layers shaded; dashed: the MMD²
    that no shift would give, ``mmd2_null``)."""
    columns = ["layer", "group", "masked", "cosine_distance", "mmd2", "mmd2_null"]
    require_columns(shift, columns, "plot_distribution_shift")
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


@checked
def plot_patching(table: pd.DataFrame) -> plt.Figure:
    """What a patching sweep restored (``restored``: 0 = corrupted, 1 = clean): a layer x head
    map (`patch_heads`), a layer x position map (`patch_residual`) or a line over layers
    (`patch_token_group`)."""
    require_columns(table, ["layer", "restored"], "plot_patching")
    if "head" in table or "position" in table:
        column = "head" if "head" in table else "position"
        grid = table.pivot(index="layer", columns=column, values="restored")
        values = grid.to_numpy(dtype=float)
        width = min(14.0, 0.45 * grid.shape[1] + 2.5)
        fig, ax = plt.subplots(figsize=(width, 0.45 * grid.shape[0] + 1.6))
        im = ax.imshow(values, cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
        if values.size <= 120:
            annotate_cells(
                ax, [[f"{v:.2f}" for v in row] for row in values], dark_cells(values, 1.0)
            )
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


def _panel_title(key: tuple, columns: list[str]) -> str:
    """A probe panel's title: its model and target (`probe_subjects`' rows) and its cut."""
    parts = [str(v) for c, v in zip(columns, key) if c != "cut"]
    cut = dict(zip(columns, key))["cut"]
    parts.append("no edge cut" if cut == "none" else f"cut: {cut}")
    return " · ".join(parts)


@checked
def plot_probes(table: pd.DataFrame) -> plt.Figure:
    """Probe accuracy by layer, one line per token group (dotted: the same probe on the control
    task; grey: chance), one panel per ``cut``, ``model`` and ``target`` the table has, from
    `emg_lens.inspect.probe_tokens` or `probe_subjects` (subjects averaged).

    >>> table = pd.DataFrame({"layer": [0, 1], "group": "emg", "accuracy": [0.3, 0.9],
    ...                       "control_accuracy": [0.3, 0.4], "chance": 0.25})
    >>> len(plot_probes(table).axes)
    1
    """
    require_columns(
        table, ["layer", "group", "accuracy", "control_accuracy", "chance"], "plot_probes"
    )
    table = table.assign(cut=table.get("cut", "none"))
    columns = [c for c in ("target", "model") if c in table.columns] + ["cut"]
    panels = list(dict.fromkeys(zip(*(table[c] for c in columns))))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, key in zip(axes, panels):
        rows = table[np.logical_and.reduce([table[c] == v for c, v in zip(columns, key)])]
        mean = rows.groupby(["group", "layer"], sort=False)[["accuracy", "control_accuracy"]]
        mean = mean.mean().reset_index()
        for k, (group, g) in enumerate(mean.groupby("group", sort=False)):
            color = COLORS[k % 10]
            ax.plot(g["layer"], g["accuracy"], marker="o", color=color, label=str(group))
            ax.plot(g["layer"], g["control_accuracy"], ls=":", color=color, lw=1)
        ax.axhline(float(rows["chance"].mean()), color="0.6", lw=1, ls="--")
        ax.set_xticks(sorted(rows["layer"].unique()))
        ax.set_xlabel("layer (residual stream entering it; last: after the last block)")
        ax.set_title(_panel_title(key, columns), fontsize=10)
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


@checked
def plot_interchange(table: pd.DataFrame) -> plt.Figure:
    """Interchange intervention accuracy by layer, one colour per site (``group``) and ``cut``,
    from a table of one row per subject and site (``k`` of ``n`` pairs follow the source; as
    ``emg-lens probe`` writes ``interchange.csv``). Each subject's point has its own 95 %
    interval (``ci_low``, ``ci_high``); with several subjects those are drawn thin beside the
    mean of the subjects' IIA, bold, with its t interval over subjects
    (`emg_lens.inspect.interchange.over_subjects`), never one over pooled pairs.

    >>> table = pd.DataFrame({"layer": [0, 1], "group": "acc", "k": [80, 30], "n": 100})
    >>> len(plot_interchange(table).axes[0].lines) >= 1
    True
    """
    from emg_lens.inspect.interchange import SITE_KEYS, over_subjects
    from emg_lens.stats.compare import clopper_pearson

    require_columns(table, ["layer", "group", "k", "n"], "plot_interchange")
    iia = table["k"] / table["n"].where(table["n"] > 0)
    table = table.assign(cut=table.get("cut", "none"), iia=iia)
    if not {"ci_low", "ci_high"} <= set(table.columns):
        low, high = clopper_pearson(table["k"], table["n"])
        table = table.assign(ci_low=low, ci_high=high, unit="pair")
    # a subject is a row of its site: its number where the table has one, else its rank
    subject = table["subject"] if "subject" in table else table.groupby(SITE_KEYS).cumcount()
    subjects = list(dict.fromkeys(subject))
    several = bool(table.duplicated(SITE_KEYS).any())
    mean = over_subjects(table)
    fig, ax = plt.subplots(figsize=(5.6, 4.2 if several else 3.6))
    spread = min(0.3, 0.06 * len(subjects))  # each subject's points a little apart
    own_style = {"ls": "none", "ms": 3, "lw": 0.8, "alpha": 0.5, "capsize": 0}
    for k, ((cut, group), rows) in enumerate(table.groupby(["cut", "group"], sort=False)):
        label = f"{group}" + ("" if cut == "none" else f", cut {cut}")
        style = {"color": COLORS[k % 10], "ls": "-" if cut == "none" else "--"}
        for i, s in enumerate(subjects if several else []):
            own = rows[subject[rows.index] == s].sort_values("layer")
            shift = (i / max(len(subjects) - 1, 1) - 0.5) * spread
            _interval_bars(ax, own["layer"] + shift, own, marker="o", **{**style, **own_style})
        if several:
            at = mean[(mean["cut"] == cut) & (mean["group"] == group)].sort_values("layer")
            _interval_bars(ax, at["layer"], at, marker="s", lw=2, capsize=4, label=label, **style)
        else:
            _interval_bars(ax, rows["layer"], rows, marker="o", capsize=3, label=label, **style)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(sorted(table["layer"].unique()))
    ax.set_xlabel("layer (residual stream entering it)")
    ax.set_ylabel("interchange intervention accuracy")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, title="tokens taken from the source", title_fontsize=8)
    units = set(table["unit"]) if "unit" in table else {"trial"}
    interval = (
        "resampling its trials"
        if units == {"trial"}
        else "Clopper-Pearson over its pairs"
        if units == {"pair"}
        else "over its trials, or its pairs where it has no trials"
    )
    if several:
        title = (
            f"Predictions that follow the source's label, {len(subjects)} subjects\nthin: each "
            f"subject's 95 % interval ({interval})\nbold: the subjects' mean, 95 % t interval "
            "over subjects"
        )
    else:
        title = f"Predictions that follow the source's label (95 % interval {interval})"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _interval_bars(ax: plt.Axes, x: pd.Series, rows: pd.DataFrame, **style) -> None:
    """``rows``' ``iia`` at ``x`` with bars from ``ci_low`` to ``ci_high``."""
    yerr = [rows["iia"] - rows["ci_low"], rows["ci_high"] - rows["iia"]]
    ax.errorbar(x, rows["iia"], yerr=yerr, **style)
