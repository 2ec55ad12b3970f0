"""Figures of the inspection tables, one function per table, each returning a matplotlib Figure
(the CLI saves PNG and SVG), and an optional CircuitsVis export.

``heads``: what the heads do (attention flow, the weight circuits, head importance, attention
mass against causal effect, direct attribution); ``layers``: what changes layer by layer
(distribution shift, patching, probes with their control task, interchange accuracy with its
interval); ``patterns``: one layer's pattern, token by token (`plot_pattern`, and
`to_circuitsvis`, an interactive CircuitsVis view, ``pip install emg_lens[viz]``;
`attention_view_record` what ``report.html`` draws).
``style`` holds what they share (palette, column checks, cell annotations)."""

from emg_lens.inspect.plots.heads import (
    plot_attention_flow,
    plot_attribution,
    plot_head_importance,
    plot_mass_vs_effect,
    plot_ov_circuit,
    plot_qk_circuit,
)
from emg_lens.inspect.plots.layers import (
    plot_distribution_shift,
    plot_interchange,
    plot_patching,
    plot_probes,
)
from emg_lens.inspect.plots.patterns import (
    attention_view_record,
    plot_pattern,
    to_circuitsvis,
    token_labels,
)

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
