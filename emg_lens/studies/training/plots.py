"""The figure of a training study: per-subject values grouped by architecture and input."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np

from emg_lens.studies.plots import draw_box, legend_patches


def comparison_figure(result) -> plt.Figure:
    """Grouped boxes of a `TrainingStudyResult`: one group per architecture, one box per input
    (per-subject values, trials averaged, subjects as dots), the corrected significance mark
    above each box.

    >>> import pandas as pd
    >>> from emg_lens.studies import TrainingStudyResult, TrainingStudySpec
    >>> spec = TrainingStudySpec.from_dict({"name": "t", "data": {"subjects": [1, 2]},
    ...     "architectures": ["IsoNet"], "reference": "both", "inputs": [
    ...         {"name": "both", "modalities": ["emg", "acc"]},
    ...         {"name": "emg", "modalities": ["emg"]}]})
    >>> table = pd.DataFrame({"subject": [1, 2] * 2, "architecture": "IsoNet", "trial": 0,
    ...     "input": ["both"] * 2 + ["emg"] * 2, "value": [0.9, 0.92, 0.6, 0.62]})
    >>> fig = comparison_figure(TrainingStudyResult.from_table(spec, table))
    >>> [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    ['both (reference)', 'emg']
    >>> plt.close(fig)
    """
    spec, means = result.spec, result.subject_means()
    inputs = [inp.name for inp in spec.inputs]
    boxes = len(spec.architectures) * len(inputs)
    fig, ax = plt.subplots(figsize=(max(5.5, 1.0 + 0.5 * boxes), 4.0))
    lo, hi = float(means["value"].min()), float(means["value"].max())
    span = max(hi - lo, 1e-3)
    mark_y = hi + 0.04 * span  # one row of significance marks above every box
    jitter = np.random.default_rng(0)
    for i, arch in enumerate(spec.architectures):
        for j, name in enumerate(inputs):
            sel = (means["architecture"] == arch) & (means["input"] == name)
            values = means.loc[sel, "value"].to_numpy()
            mark = result.summary.loc[
                (result.summary["architecture"] == arch) & (result.summary["input"] == name),
                "stars",
            ].iloc[0]
            x = draw_box(ax, values, i, j, len(inputs), jitter=jitter)
            ax.text(x, mark_y, mark, ha="center", va="bottom", fontsize=7)
    ax.set_ylim(lo - 0.08 * span, hi + 0.16 * span)
    # "HierarchicalTransformer" -> "Hierarchical\nTransformer": long class names side by side.
    names = [
        re.sub(r"(?<=[a-z])(?=[A-Z])", "\n", a, count=1) if len(a) > 12 else a
        for a in spec.architectures
    ]
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_ylabel(f"test {spec.metric} per subject")
    ax.grid(axis="y", alpha=0.3)
    labels = [f"{n} (reference)" if n == spec.reference else n for n in inputs]
    ax.legend(
        legend_patches(len(inputs)),
        labels,
        fontsize=8,
        frameon=False,
        ncol=len(inputs),
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
    )
    ax.set_title(
        f"{spec.name}: {result.n_subjects} subjects; marks: {spec.stats.test} vs reference, "
        f"{spec.stats.correction}",
        fontsize=9,
    )
    fig.tight_layout()
    return fig
