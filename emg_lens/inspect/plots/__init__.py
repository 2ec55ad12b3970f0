"""Figures of the inspection tables, one function per table, each returning a matplotlib Figure
(the CLI saves PNG and SVG), and an optional CircuitsVis export.

What the heads do (``heads``):

- `plot_attention_flow`: group-block heatmaps, one per layer x head;
- `plot_qk_circuit` / `plot_ov_circuit`: the weight circuits (query x key scores, channel x
  class logits), one heatmap per layer x head;
- `plot_head_importance`: layer x head maps of the metric change, one panel per edge kind;
- `plot_mass_vs_effect`: attention mass against causal effect, per edge kind;
- `plot_attribution`: per-layer bars and a per-head map of direct attribution;

what changes layer by layer (``layers``):

- `plot_distribution_shift`: cosine distance and MMD² per layer;
- `plot_patching`: what a patching sweep restored;
- `plot_probes`: probe accuracy by layer, one line per token group (dotted: the control task);
- `plot_interchange`: interchange intervention accuracy by layer, with its interval;

one layer's pattern, token by token (``patterns``):

- `plot_pattern`: one head's attention pattern with the token groups drawn along both axes;
- `to_circuitsvis`: an interactive CircuitsVis view of one layer's patterns
  (``pip install emg_lens[viz]``); `attention_view_record` what ``report.html`` draws.

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
