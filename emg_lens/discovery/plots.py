"""Figures of screening and discovery: where the estimated effects sit (layer x head per kind of
edge), how well the screen predicts the exact effects, and faithfulness against circuit size."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from emg_lens.discovery.metrics import spearman, spearman_p
from emg_lens.discovery.screen import Screen
from emg_lens.discovery.search import Discovery
from emg_lens.errors import ArgumentError, checked
from emg_lens.inspect.plots.style import annotate_cells, dark_cells
from emg_lens.stats.compare import format_p


@checked
def plot_screen(
    screen: Screen | pd.DataFrame, value: str = "estimate", *, metric: str = "metric"
) -> plt.Figure:
    """A layer x head map of ``value`` (``"estimate"``, ``"estimate_accuracy"``, or after
    `Screen.verify` ``"exact"``) per kind of candidate (query group -> key group), with each
    cell's rank. A table of several subjects (a discovery study's ``screen``) is averaged over
    them, and ranked again.

    >>> from emg_lens import EncoderConfig
    >>> from emg_lens.discovery import screen
    >>> from emg_lens.models import IsoNet
    >>> model = IsoNet(EncoderConfig.preset("tiny", seed=0)).eval()
    >>> X = model.example_input(8)
    >>> fig = plot_screen(screen(model, (X, model(X).argmax(-1))))
    >>> len(fig.axes)  # 9 group pairs and the colour bar
    10
    """
    title = "Screen: the effect of cutting each (layer, head, query -> key)"
    if isinstance(screen, Screen):
        table, metric = screen.table, screen.metric
        title += (
            f" (baseline {metric} {screen.baseline:.3f}, accuracy {screen.baseline_accuracy:.3f})"
        )
    else:
        table = screen
    if "subject" in table and value in table:
        title += f", mean over {table['subject'].nunique()} subjects"
        table = table.groupby(["layer", "head", "kind"], as_index=False)[value].mean()
        table["rank"] = table[value].rank(method="first").astype(int)
    if not {"layer", "head", "kind", value} <= set(table) or table["head"].isna().any():
        raise ArgumentError(
            f"plot_screen draws one head per cell of a screen's table (layer, head, kind and "
            f"value columns): value must be a column of the screen "
            f"({[c for c in table.columns if c.startswith(('estimate', 'exact'))]}) and every "
            f"candidate must act on one head; got {value!r}"
        )
    kinds = list(dict.fromkeys(table.sort_values(["layer", "head"])["kind"]))
    n_layers, n_heads = int(table["layer"].max()) + 1, int(table["head"].max()) + 1
    cols = min(len(kinds), 3)
    rows = -(-len(kinds) // cols)
    lim = max(1e-6, float(np.nanmax(np.abs(table[value].to_numpy(dtype=float)))))
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(cols * (0.55 * n_heads + 1.3) + 1.2, rows * (0.45 * n_layers + 1.0) + 0.8),
        squeeze=False,
        constrained_layout=True,
    )
    for ax, kind in zip(axes.flat, kinds):
        part = table[table["kind"] == kind]
        grid = np.full((n_layers, n_heads), np.nan)
        rank = np.zeros((n_layers, n_heads), dtype=int)
        for r in part.itertuples(index=False):
            grid[int(r.layer), int(r.head)] = getattr(r, value)
            rank[int(r.layer), int(r.head)] = r.rank
        im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        if n_heads * n_layers <= 64:
            text = [[f"#{rank[i, j]}" for j in range(n_heads)] for i in range(n_layers)]
            annotate_cells(ax, text, dark_cells(grid, lim), fontsize=6)
        ax.set_xticks(range(n_heads))
        ax.set_yticks(range(n_layers))
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        ax.set_title(kind, fontsize=9)
    for ax in list(axes.flat)[len(kinds) :]:
        ax.axis("off")
    label = {"estimate": "estimated", "exact": "exact"}.get(value, value)
    fig.colorbar(im, ax=axes, shrink=0.7, label=f"Δ {metric} ({label})")
    fig.suptitle(f"{title}; #1 = largest drop", fontsize=9)
    return fig


@checked
def plot_screen_vs_exact(screen: Screen | pd.DataFrame, *, metric: str = "metric") -> plt.Figure:
    """Estimated against exact effect of the verified candidates (after `Screen.verify`; or a
    discovery study's pooled ``screen`` table), metric and accuracy side by side, with the
    identity line and Spearman's rho over the points shown."""
    if isinstance(screen, Screen):
        table, metric = screen.table, screen.metric
    else:
        table = screen
    if "exact" not in table or table["exact"].notna().sum() == 0:
        raise ArgumentError("plot_screen_vs_exact needs a verified screen: call screen.verify()")
    # the screen's estimates measured by masked passes (an exact candidate's are its own)
    done = table[table["exact"].notna() & (table.get("method", "") != "exact")]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4), constrained_layout=True)
    pairs = (("estimate", "exact", metric), ("estimate_accuracy", "exact_accuracy", "accuracy"))
    for ax, (est, exact, name) in zip(axes, pairs):
        ax.scatter(done[est], done[exact], s=22, alpha=0.8)
        lo = float(min(done[est].min(), done[exact].min(), 0))
        hi = float(max(done[est].max(), done[exact].max(), 0))
        ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8, ls="--", label="estimate = exact")
        ax.set_xlabel(f"estimated Δ {name}")
        ax.set_ylabel(f"exact Δ {name}")
        rho = spearman(done[est], done[exact])
        p = format_p(spearman_p(rho, len(done)), 2, "p")
        ax.set_title(
            f"{name}: Spearman ρ = {rho:.2f} over {len(done)} candidates ({p})", fontsize=9
        )
        ax.legend(fontsize=7, loc="upper left")
    return fig


@checked
def plot_faithfulness(
    found: Discovery | pd.DataFrame, *, tau: float | None = None, metric: str = "metric"
) -> plt.Figure:
    """Faithfulness (and, for one circuit, accuracy) as the greedy search cuts candidates,
    against the share of edges kept: one `Discovery`, or a discovery study's ``curve`` table
    (one line per subject)."""
    fig, ax = plt.subplots(figsize=(6.4, 4), constrained_layout=True)
    if isinstance(found, Discovery):
        curve, tau, metric = found.curve.assign(subject=0), found.tau, found.metric
        ax.set_title(
            f"Circuit: {found.n_kept}/{found.n_candidates} candidates, "
            f"{found.n_kept_edges}/{found.n_edges} edges kept; faithfulness "
            f"{found.faithfulness:.3f}, accuracy {found.circuit_score.accuracy:.3f} "
            f"(full {found.full.accuracy:.3f}, all cut {found.empty.accuracy:.3f})",
            fontsize=8,
        )
    else:
        curve = found
        ax.set_title("Faithfulness against circuit size", fontsize=9)
    several = curve["subject"].nunique() > 1
    for subject, part in curve.groupby("subject"):
        share = part["edges_kept"] / part["edges_kept"].iloc[0]
        label = f"subject {subject}" if several else f"faithfulness ({metric})"
        ax.plot(share, part["faithfulness"], marker="o", ms=2, lw=1, label=label)
        if not several:
            ax.plot(share, part["accuracy"], marker="s", ms=2, lw=1, label="accuracy")
    if tau is not None:
        ax.axhline(1 - tau, color="gray", ls="--", lw=0.8, label=f"1 - τ = {1 - tau:g}")
    ax.invert_xaxis()
    ax.set_xlabel("share of candidate edges kept")
    ax.set_ylabel("faithfulness" if several else "faithfulness / accuracy")
    ax.legend(fontsize=7, loc="lower left", ncol=2 if several else 1)
    return fig
