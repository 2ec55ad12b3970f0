"""The figures of sparse features (`emg_lens.inspect.features.Features`): the reconstruction,
feature x class heatmaps, and a feature's mean activation per channel on the body.

Each function reads the tables of a `Features` (``features.reconstruction``, ``.per_class``,
``.features``, ``.classes``, ``.ablation``, ``.channels``) and its ``montages``."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from emg_lens._hints import checked


@checked
def plot_reconstruction(features: Any) -> plt.Figure:
    """Left: accuracy per class, the model's own beside the reconstruction spliced in. Right:
    how often each feature fires (share of held-out tokens, sorted, log scale), dead ones
    counted in the title."""
    r = features.reconstruction.iloc[0]
    per_class = features.per_class
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    x = np.arange(len(per_class))
    left.bar(x - 0.2, per_class["model_accuracy"], 0.4, label="model", color="#4c72b0")
    left.bar(x + 0.2, per_class["spliced_accuracy"], 0.4, label="reconstruction spliced in",
             color="#dd8452")  # fmt: skip
    left.set_xticks(x, per_class["class"].astype(str))
    left.set_ylim(0, 1.25)  # room for the legend above the bars
    left.set_yticks(np.linspace(0, 1, 6))
    left.set_xlabel("gesture class")
    left.set_ylabel("test accuracy")
    left.legend(fontsize=8, loc="upper center", ncol=2)
    left.set_title(
        f"accuracy {r.model_accuracy:.3f} (model), {r.spliced_accuracy:.3f} (spliced)",
        fontsize=9,
    )
    fires = np.sort(features.features["fires"].to_numpy())[::-1]
    live = fires[fires > 0]
    right.bar(np.arange(len(live)), live, color="#55a868", width=1.0)
    right.set_yscale("log")
    right.set_xlim(-0.5, len(fires) - 0.5)
    right.set_xlabel("feature (sorted by how often it fires)")
    right.set_ylabel("share of tokens it fires on")
    right.set_title(
        f"{len(live)} live, {len(fires) - len(live)} dead of {len(fires)}; "
        f"{r.active_per_token:.1f} active per token",
        fontsize=9,
    )
    fig.suptitle(
        f"Sparse features on blocks.{r.layer}.hook_{r.hook} ({r.groups} tokens): fraction of "
        f"variance explained {r.fve:.3f} on {r.test_tokens} held-out tokens",
        fontsize=10,
    )
    return fig


def plot_feature_classes(features: Any, count: int) -> plt.Figure:
    """For the ``count`` costliest features (rows, with their modality shares): the mean
    activation per gesture class (each row scaled to its maximum) and the change in the
    class's accuracy when the feature is ablated."""
    chosen = features.costliest(count)
    labels = list(dict.fromkeys(features.classes["class"]))
    act = features.classes.pivot(index="feature", columns="class", values="mean_activation")
    act = act.reindex(index=chosen, columns=labels).to_numpy(dtype=float)
    act = act / np.maximum(act.max(axis=1, keepdims=True), 1e-30)
    cost = features.ablation.pivot(index="feature", columns="class", values="delta_accuracy")
    cost = cost.reindex(index=chosen, columns=labels).to_numpy(dtype=float)
    shares = [c for c in features.features.columns if c.startswith("share_")]
    table = features.features.set_index("feature")
    rows = [
        f"f{f} " + " ".join(f"{c.removeprefix('share_')}{table.loc[f, c]:.2f}" for c in shares)
        for f in chosen
    ]
    height = 0.32 * len(chosen) + 1.8
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(3.2 + 0.9 * len(labels), height), layout="constrained"
    )
    im = left.imshow(act, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    fig.colorbar(im, ax=left, shrink=0.8, label="mean activation / row max")
    lim = max(1e-3, float(np.nanmax(np.abs(cost))))
    im = right.imshow(cost, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    fig.colorbar(im, ax=right, shrink=0.8, label="Δ accuracy when ablated")
    for ax, title in ((left, "mean activation per class"), (right, "ablated: Δ accuracy")):
        ax.set_xticks(range(len(labels)), labels)
        ax.set_xlabel("gesture class")
        ax.set_title(title, fontsize=9)
    left.set_yticks(range(len(chosen)), rows, fontsize=7)
    right.set_yticks(range(len(chosen)), [f"f{f}" for f in chosen], fontsize=7)
    fig.suptitle(
        f"The {len(chosen)} costliest features to ablate (token mass share per group)",
        fontsize=10,
    )
    return fig


@checked
def plot_feature_map(features: Any, feature: int) -> plt.Figure | None:
    """Feature ``feature``'s mean activation per channel on the electrode placement of each
    modality that has one (`emg_lens.geometry.draw.plot_channel_values`); None when no
    modality read is placed."""
    from emg_lens.geometry.draw import plot_channel_values

    rows = features.channels[features.channels["feature"] == feature]
    values = {
        group: part.sort_values("index")["mean_activation"].to_numpy(dtype=float)
        for group, part in rows.groupby("group", sort=False)
        if group in features.montages
    }
    if not values:
        return None
    row = features.features.set_index("feature").loc[feature]
    return plot_channel_values(
        values,
        features.montages,
        title=f"Feature {feature}: mean activation per channel (fires most in class "
        f"{row.top_class}; ablated: {row.delta_accuracy:+.3f} accuracy, class "
        f"{row.worst_class} {row.worst_class_delta:+.3f})",
        units="mean activation over windows",
    )
